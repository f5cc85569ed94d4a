"""`--help` that shows every flag's default: argparse's formatter, plus "(default: X)" after any
help that does not already say what its default is (flags whose value comes from an environment
variable or is a secret say it in words, so no value is ever printed for them)."""

import argparse


class DefaultsHelp(argparse.RawDescriptionHelpFormatter):
    def _get_help_string(self, action: argparse.Action) -> str | None:
        text = action.help or ""
        default = action.default
        if "default" in text or default is None or isinstance(default, bool):
            return text
        if default == argparse.SUPPRESS:
            return text
        if not action.option_strings:
            return text
        return f"{text} (default: %(default)s)"


def undocumented(parser: argparse.ArgumentParser) -> list[str]:
    """Flags whose help says neither what they do nor their default (tests keep this empty)."""
    missing = []
    for action in parser._actions:
        if action.help == argparse.SUPPRESS or not action.option_strings:
            continue
        shown = DefaultsHelp("x")._get_help_string(action) or ""
        is_switch = isinstance(action, argparse._StoreTrueAction | argparse._HelpAction)
        if not action.help or not (is_switch or "default" in shown):
            missing.append(action.option_strings[-1])
    return missing
