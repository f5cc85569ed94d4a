"""The console's forms, one module each; `form` holds what they share (`Form`, `FieldError`).

A form checks what it can itself, hands its values to `submit` (a service call) and stays open,
with what was typed, until the master accepts them.
"""

from console.ui.dialogs.adopt import AdoptDialog
from console.ui.dialogs.alert_rule import METRICS, AlertRuleDialog, Choices
from console.ui.dialogs.form import FieldError, Form, Submit, parse_env
from console.ui.dialogs.labels import LabelsDialog, parse_labels
from console.ui.dialogs.login import LoginDialog
from console.ui.dialogs.module import ModuleDialog
from console.ui.dialogs.node_picker import NodePicker
from console.ui.dialogs.silence import SilenceDialog
from console.ui.dialogs.system import SystemDialog
from console.ui.dialogs.user import UserDialog

__all__ = [
    "METRICS",
    "AdoptDialog",
    "AlertRuleDialog",
    "Choices",
    "FieldError",
    "Form",
    "LabelsDialog",
    "LoginDialog",
    "ModuleDialog",
    "NodePicker",
    "SilenceDialog",
    "Submit",
    "SystemDialog",
    "UserDialog",
    "parse_env",
    "parse_labels",
]
