"""Help that helps: every option of every command says what it does and its default."""

import argparse

from streamscribe.cli.main import build_parser


def subcommands(parser: argparse.ArgumentParser) -> dict[str, argparse.ArgumentParser]:
    """Every command by name, and the commands of a command ("keys create") too."""
    actions = [action for action in parser._actions if isinstance(action, argparse._SubParsersAction)]
    commands = dict(actions[0].choices)
    for name, command in list(commands.items()):
        if any(isinstance(action, argparse._SubParsersAction) for action in command._actions):
            commands.update({f"{name} {sub}": inner for sub, inner in subcommands(command).items()})
    return commands


def test_every_option_of_every_command_has_help_with_its_default() -> None:
    commands = subcommands(build_parser())
    assert {"serve", "transcribe", "stream", "bench", "bench-replay", "keys", "keys create"} <= set(commands)
    for name, command in commands.items():
        for action in command._actions:
            if isinstance(action, argparse._HelpAction):
                continue
            label = f"{name} {'/'.join(action.option_strings) or action.dest}"
            assert action.help, f"{label} has no help"
            if action.option_strings and action.nargs != 0:
                assert "default" in action.help, f"{label} does not say its default"


def test_serve_help_names_the_environment_and_version_is_offered() -> None:
    parser = build_parser()
    assert "STREAMSCRIBE_" in subcommands(parser)["serve"].format_help()
    assert any(isinstance(action, argparse._VersionAction) for action in parser._actions)
