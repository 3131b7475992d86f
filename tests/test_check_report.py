"""`check`'s HTML report: the verdict, then the failures with their likely cause and fix, then the matrix, then
the evidence folded away."""

from __future__ import annotations

from datathon.check.advice import advice_for
from datathon.check.model import Evidence, Probe, ProbeResult
from datathon.check.report import write_html
from datathon.check.runner import CheckReport


def _report() -> CheckReport:
    probes = [Probe("db.login.tls", "logs in over TLS", "works", print),
              Probe("db.policy", "limits as the policy", "works", print),
              Probe("ws.python", "Python kernel reads shared data", "works", print)]
    teams = ["alpha", "beta", "gamma"]
    results = []
    for p in probes:
        for t in teams:
            fail = p.id == "db.policy" and t != "gamma" or p.id == "ws.python" and t == "beta"
            results.append(ProbeResult(p.id, t, "fail" if fail else "pass", p.description, p.expect,
                                       [Evidence(f"SHOW statement_timeout -- {p.id} {t}",
                                                 "ok: 0" if fail else "ok: 5min")],
                                       detail="statement_timeout is 0, expected 5min" if fail else ""))
    return CheckReport("ev", "2026-12-02T07:00:00Z", "abc123", 1.5, probes, teams, results)


def test_failures_with_cause_and_fix_come_first_then_matrix_then_folded_evidence(tmp_path):
    path = tmp_path / "check.html"
    write_html(_report(), path)
    html = path.read_text()
    verdict, failures, matrix, evidence = (html.index("NO-GO</span>"), html.index("Failures: what to do first"),
                                           html.index("<h2>Matrix</h2>"), html.index("<h2>Evidence</h2>"))
    assert verdict < failures < matrix < evidence
    top = html[failures:matrix]
    # one row per failing probe, naming every team it failed for, with cause and fix
    assert top.count('<tr class="problem">') == 2
    assert "alpha, beta" in top and "a limit was changed on the server" in top and "run `datathon up`" in top
    assert "datathon restart TEAM" in top and "statement_timeout is 0, expected 5min" in top
    folded = html[evidence:]
    assert "<details open" not in html and folded.count("<details") == 1 + 9
    assert "SHOW statement_timeout -- db.policy gamma" in folded


def test_a_go_report_says_so_before_the_matrix(tmp_path):
    report = _report()
    for r in report.results:
        r.outcome = "pass"
    write_html(report, tmp_path / "ok.html")
    html = (tmp_path / "ok.html").read_text()
    assert html.index("No failure") < html.index("<h2>Matrix</h2>") and ">GO</span>" in html


def test_advice_picks_the_longest_prefix_and_has_a_default():
    assert "TLS" in advice_for("db.login.without_tls")[0]
    assert "wrong password" in advice_for("db.login.wrong_password")[0]
    assert "password differs" in advice_for("db.login.tls")[0]
    assert advice_for("nothing.known")[0] == "see the evidence below"
