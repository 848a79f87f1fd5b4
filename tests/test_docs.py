"""Documentation stays true: the config reference is generated from the schema, and the README's
quickstart is what CI runs."""

from pathlib import Path

from tokenfilter.config import schema_markdown

REPO = Path(__file__).resolve().parents[1]


def test_config_reference_is_current():
    committed = (REPO / "config" / "README.md").read_text()
    assert committed == schema_markdown(), "regenerate with: tokenfilter config-docs > config/README.md"


def test_readme_quickstart_has_exactly_two_commands_and_ci_runs_the_test_one():
    readme = (REPO / "README.md").read_text()
    block = readme.split("## Quickstart", 1)[1].split("```bash", 1)[1].split("```", 1)[0]
    commands = [line.split("#")[0].strip() for line in block.strip().splitlines() if line.strip()]
    assert commands == ["make run", "make test"]
    assert "make test" in (REPO / ".ci" / "run").read_text()
