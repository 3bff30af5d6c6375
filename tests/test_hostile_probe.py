"""The hostile probe, Python API (issue 26's last 'done when'): solvers.integrate / odeint /
odeint_adjoint / sdeint and odenets.build / create, tried as a hostile user would. Every
attempt must end in its expected class (tests/fixtures/hostile.py): a clear one-line error or a
correct result; never a silent wrong result, a raw traceback, a crash or data lost. The attempts:
tests/fixtures/hostile_solvers.py and hostile_models.py. The command line, run directories,
results files and full disks: tests/test_hostile_probe_cli.py."""
import pytest

from fixtures.hostile import Err, classify, tally
from fixtures.hostile_models import BUILD, MORE
from fixtures.hostile_solvers import SOLVERS

pytestmark = pytest.mark.usefixtures("one_thread")

ATTEMPTS = SOLVERS + BUILD + MORE


SEEN = {}


@pytest.mark.parametrize("attempt", ATTEMPTS, ids=[a.name for a in ATTEMPTS])
def test_attempt(attempt):
    outcome, detail = SEEN[attempt.name] = classify(attempt)
    expected = "clear error" if isinstance(attempt.expect, Err) else "correct"
    assert outcome == expected, f"{attempt.name}: {outcome} ({detail})"


def test_probe_counts():
    """The table's counts (printed with -s; attempts not run yet are run here)."""
    outcomes = {a.name: (SEEN.get(a.name) or classify(a))[0] for a in ATTEMPTS}
    print(f"\nPython API probe: {len(ATTEMPTS)} attempts, {tally(outcomes)}")
    assert len(ATTEMPTS) == len({a.name for a in ATTEMPTS}) >= 150
