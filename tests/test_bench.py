"""`make bench`'s baked-image lines (scripts/bench.py): the last boot test's stock and baked times, and
the dev stack's first `up` estimated with their ratio by the cost model of scripts/critical_path.py."""

from __future__ import annotations

import json
import re

from scripts.bench import baked_image_lines
from scripts.critical_path import COSTS


def test_the_ratio_comes_from_the_boot_test_report_and_scales_the_boot_of_the_estimate(tmp_path):
    report = tmp_path / "boot-test-report.json"
    found = {"node": "client-0", "stock_seconds": 600, "baked_seconds": 150, "ratio": 0.25, "goal": 0.333, "met": True,
             "stock_bootstrap_seconds": 500, "baked_bootstrap_seconds": 40}  # fmt: skip
    report.write_text(json.dumps({"accelerator": "tcg", "stock_vs_baked": found}))
    first, estimate = baked_image_lines(report)
    assert re.search(r"^Baked image \(boot-test-report\.json, \d{4}-\d\d-\d\d \d\d:\d\d UTC, TCG\): client-0 booted "
                     "in 600 s from the stock image", first)  # fmt: skip
    assert first.endswith(
        "150 s from the baked one: ratio 0.25 (goal <= 0.33: met); the boot script alone 500 s and 40 s."
    ), "a report of an earlier boot test, without the floor, says nothing of one"
    report.write_text(json.dumps({"accelerator": "tcg", "stock_vs_baked": found | {"ratio_without_script": 0.183}}))
    assert baked_image_lines(report)[0].endswith(
        "the boot script alone 500 s and 40 s; with no boot script at all the baked boot would be 0.18 of the stock one."
    )
    cost = COSTS["libvirt"]
    assert cost.minutes(1, 0.25) == cost.create + cost.boot * 0.25 + cost.gate + cost.tail
    assert estimate.startswith(f"dev first `up` on a KVM host, estimated: {cost.minutes(1):.1f} min stock, "
                               f"{cost.minutes(1, 0.25):.1f} min baked")  # fmt: skip


def test_without_a_comparison_it_says_how_to_make_one(tmp_path):
    assert baked_image_lines(tmp_path / "absent.json") == [
        "Baked image: no comparison in absent.json; `make boot-test` boots client-0 from both images and writes it"
    ]
    (tmp_path / "failed.json").write_text(json.dumps({"stock_vs_baked": None}))
    assert baked_image_lines(tmp_path / "failed.json")[0].startswith("Baked image: no comparison in failed.json")


def test_a_missed_goal_and_an_unknown_accelerator_say_so(tmp_path):
    report = tmp_path / "boot-test-report.json"
    found = {"node": "client-0", "stock_seconds": 300, "baked_seconds": 120, "ratio": 0.4, "goal": 0.333, "met": False}
    report.write_text(json.dumps({"stock_vs_baked": found}))
    first, estimate = baked_image_lines(report)
    assert ", ?): client-0" in first and "(goal <= 0.33: NOT met)" in first
    assert estimate.endswith("plus create 0.2, gate 0.5 and tail 3.0 min: scripts/critical_path.py).")
