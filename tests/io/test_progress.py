"""progress: counting by status, rate and ETA, quiet off a terminal, drawing when forced."""

from __future__ import annotations

import pytest

from pixelmill.progress import Progress


def test_counts_by_status_and_eta():
    with Progress(10, what="files", enabled=False) as p:
        for status in ["ok", "ok", "invalid", "failed"]:
            p.advance(status=status)
        p.advance(n=2)
        assert p.counts == {"ok": 4, "invalid": 1, "failed": 1}
        assert p.done == 6
        assert p.rate > 0
        eta = p.eta()
        assert eta is not None and eta >= 0
    assert Progress(None, enabled=False).eta() is None


def test_bad_status_and_total_are_refused():
    p = Progress(3, enabled=False)
    with pytest.raises(ValueError, match="status"):
        p.advance(status="skipped")
    with pytest.raises(ValueError, match="total"):
        Progress(-1)


def test_quiet_when_not_a_terminal(capsys):
    with Progress(2) as p:  # pytest's stderr is not a terminal
        p.advance()
        p.advance(status="invalid")
    assert capsys.readouterr().err == ""


def test_draws_rate_and_bad_counts_when_forced(capsys):
    with Progress(3, what="files", force=True) as p:
        p.advance()
        p.advance(status="invalid")
        p.advance(status="failed")
        p.set_total(3)
    err = capsys.readouterr().err
    assert "files" in err and "1 invalid" in err and "1 failed" in err and "3/3" in err
