"""The apply file: read strictly, written back the same."""

import pytest

from gdosctl import spec
from gdosctl.errors import USAGE, CtlError

GOOD = """\
system: shop
description: the shop
modules:
  - name: web
    package: web
    version: "1.0.1"
    start_order: 2
    env: {LOG_LEVEL: info}
    args: []
    instances:
      - node: node-a
        env: {PORT: "8001"}
      - node: node-b
        args: ["-v"]
  - name: worker
    package: worker
"""


def test_a_file_reads_and_writes_back_the_same():
    system = spec.parse(GOOD)
    assert system.modules[0].instances[1].args == ["-v"]
    assert system.modules[1].version is None and system.modules[1].args is None
    assert spec.parse(spec.render(system)) == system


@pytest.mark.parametrize(
    ("text", "words"),
    [
        (
            "system: s\nmodules:\n  - name: w\n    pakage: w\n",
            "unknown field modules[0].pakage (did you mean package?)",
        ),
        ("sytem: s\n", "unknown field sytem (did you mean system?)"),
        (
            "system: s\nmodules:\n  - {name: w, package: w, version: 1.0}\n",
            'modules[0].version: write it in quotes ("1.0")',
        ),
        (
            "system: s\nmodules:\n  - {name: w, package: w, env: {PORT: 8001}}\n",
            "modules[0].env.PORT: write it in quotes",
        ),
        ("system: s\nmodules:\n  - {name: w}\n", "modules[0].package: is required"),
        ("modules: []\n", "system: is required"),
        ("system: s\nmodules: {web: 1}\n", "modules: must be a list"),
        (
            "system: s\nmodules:\n  - {name: w, package: w}\n  - {name: w, package: x}\n",
            "module w is listed twice",
        ),
        ("system: [unclosed\n", "is not valid YAML"),
    ],
)
def test_a_mistake_is_a_usage_error_naming_its_place(text, words):
    with pytest.raises(CtlError) as info:
        spec.parse(text, "shop.yaml")
    assert info.value.code == USAGE
    assert words in info.value.message, info.value.message
