"""The live session core, sans-I/O: audio in, decode requests out, results in, events out."""
