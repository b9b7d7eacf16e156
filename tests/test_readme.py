"""The README's set-up commands stay true: CI runs the README's test command verbatim."""
import re

from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def _bash_blocks(text: str) -> list[str]:
    return re.findall(r"```bash\n(.*?)```", text, flags=re.S)


def test_readme_has_two_setup_commands_and_ci_runs_the_test_one():
    readme = (REPO / "README.md").read_text()
    setup = readme.split("## Set up", 1)[1].split("\n## ", 1)[0]
    blocks = [b.strip() for b in _bash_blocks(setup)]
    assert len(blocks) == 2, blocks
    test_cmd = blocks[1]
    assert "pytest" in test_cmd
    ci = (REPO / ".ci" / "run").read_text()
    assert test_cmd in ci.splitlines()
