"""PipelineResult: what a run's status and exit code are, from its sources and stages."""

from __future__ import annotations

from datetime import UTC, date, datetime

import pytest

from ltc.app.pipeline import PipelineResult, SourceStatus, _source_status


@pytest.mark.parametrize(("streams", "status"), [
    ([{"stream": "a", "status": "success"}, {"stream": "b", "status": "success"}], "ok"),
    ([{"stream": "a", "status": "success"}, {"stream": "b", "status": "paused", "message": "quota"}], "paused"),
    ([{"stream": "a", "status": "incomplete", "message": "3/4"}], "incomplete"),
    ([{"stream": "a", "status": "paused"}, {"stream": "b", "status": "failed", "message": "boom"}], "failed"),
])
def test_source_status_from_its_streams(streams: list[dict[str, str]], status: str) -> None:
    st = _source_status("crm", "salesforce", streams)
    assert st.status == status and st.missing == (status != "ok")
    assert st.message == next((s["message"] for s in streams if s["status"] != "success" and s.get("message")), None)


def test_status_and_exit_code() -> None:
    res = PipelineResult(as_of=date(2026, 10, 31))
    res.sources["erp"] = SourceStatus("erp", "tryton")
    assert (res.status, res.exit_code, res.partial, res.reason()) == ("completed", 0, False, "")
    since = datetime(2026, 10, 30, 6, 0, tzinfo=UTC)
    res.sources["crm"] = SourceStatus("crm", "hubspot", "paused", "daily limit", since)
    assert (res.status, res.exit_code, res.partial) == ("paused", 3, True)
    assert res.reason() == ("Source crm (hubspot) paused (vendor quota; it resumes on the next run); its data is "
                            "missing since 2026-10-30 06:00 UTC (last complete sync): daily limit")
    res.sources["pay"] = SourceStatus("pay", "stripe", "failed", "401")
    assert (res.status, res.exit_code) == ("failed", 1)
    res.sources["pay"].exit_code = 2  # its credentials were rejected: the operator's to fix, the worst code
    assert (res.status, res.exit_code) == ("failed", 2)
    out = res.to_dict()
    assert out["status"] == "failed" and out["partial"] is True and out["sources"]["crm"]["since"].startswith("2026")
    done = PipelineResult(as_of=date(2026, 10, 31), failed_stage="reconcile", error="conservation")
    assert (done.status, done.exit_code, done.banners()) == ("failed", 1, ["Stage reconcile failed: conservation"])
    full = PipelineResult(as_of=date(2026, 10, 31), failed_stage="fx", failed_stage_exit_code=2, error="disk full")
    assert (full.status, full.exit_code) == ("failed", 2)  # an operator's to fix, as a source's would be


def test_a_stage_that_does_not_block_and_a_later_failure_are_both_named_with_the_worst_code() -> None:
    """fx fails without stopping the run (its rates of before stay): a later stage failing too is named as well,
    and the run exits 2 when that one is the operator's to fix, though fx's own was 1."""
    from typing import Any

    from canonical.errors import ConfigError, LtcError
    from ltc.app.pipeline import Context, Stage, run_stage

    def fail(exc: Exception) -> Any:
        def run(_ctx: Context) -> dict[str, Any]:
            raise exc
        return run

    ctx = Context(store=None, cfg=None, result=PipelineResult(as_of=date(2026, 10, 31)))  # type: ignore[arg-type]
    for stage in (Stage("fx", fail(LtcError("rate server answered 503")), "fx", blocks=False),
                  Stage("report", fail(ConfigError("reports_dir is a file")), "report")):
        with pytest.raises(LtcError):
            run_stage(ctx, stage)
    res = ctx.result
    assert (res.status, res.exit_code, res.failed_stage) == ("failed", 2, "fx")
    assert res.banners() == ["Stage fx failed: rate server answered 503",
                             "Stage report failed: ConfigError: reports_dir is a file"]
