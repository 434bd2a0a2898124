"""Vote store (SQLite), winners, Fleiss' kappa and the results report of the screening."""
from __future__ import annotations

import csv
import io
import json
import sqlite3
import threading

import numpy as np
import pytest
from click.testing import CliRunner

from sice.cli.screen import command as screen_command
from sice.errors import DatasetError
from sice.screening.results import fleiss_kappa, pairwise_agreement, screening_results, to_csv
from sice.screening.store import VoteStore, _connect, count_votes, normalise_rater, winners


@pytest.fixture
def store(tmp_path):
    return VoteStore(tmp_path / "screening.sqlite")


def test_database_is_wal_with_full_sync(store):
    conn = sqlite3.connect(store.path)
    assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"  # stored in the file
    conn.close()
    conn = _connect(store.path)
    assert conn.execute("PRAGMA synchronous").fetchone()[0] == 2  # 2 = FULL
    conn.close()


def test_every_vote_is_a_row_and_the_latest_counts(store):
    store.record("Ann", "1", "mertens")
    store.record("Ann", "1", "drago")      # changed her mind
    store.record("Ann", "2", None)         # none acceptable
    store.record("Ben", "1", "mertens")
    rows = sqlite3.connect(store.path).execute("SELECT rater, scene, candidate, time FROM votes ORDER BY id").fetchall()
    assert [r[:3] for r in rows] == [("Ann", "1", "mertens"), ("Ann", "1", "drago"), ("Ann", "2", None),
                                     ("Ben", "1", "mertens")]
    assert all(r[3].endswith("Z") and "T" in r[3] for r in rows)
    assert store.latest_votes() == {("Ann", "1"): "drago", ("Ann", "2"): None, ("Ben", "1"): "mertens"}
    assert store.latest_votes("  Ann ") == {("Ann", "1"): "drago", ("Ann", "2"): None}
    assert len(store.history()) == 4


def test_rater_names_are_normalised_and_checked():
    assert normalise_rater("  Ann \t Lee\n") == "Ann Lee"
    assert normalise_rater("Zoe\u0301") == "Zo\u00e9"  # NFC: one rater however the accent was typed
    for bad, match in [("", "empty"), ("   ", "empty"), ("a" * 65, "longer"), ("a\x00b", "control"),
                       ("a\u200bb", "control")]:
        with pytest.raises(ValueError, match=match):
            normalise_rater(bad)


def test_opaque_ids_are_stable_keyed_and_per_scene(store):
    a = store.opaque_id("1", "mertens")
    assert len(a) == 16 and int(a, 16) >= 0 and "mertens" not in a
    assert VoteStore(store.path).opaque_id("1", "mertens") == a  # same secret after a restart
    assert store.opaque_id("2", "mertens") != a
    assert len({store.opaque_id("1", n) for n in ["a", "b", "c", "d"]}) == 4


def test_display_order_is_fixed_per_rater_and_scene(store):
    names = [f"gen{i}" for i in range(6)]
    order = store.display_order("Ann", "1", names)
    assert sorted(order) == names
    assert store.display_order("Ann", "1", list(reversed(names))) == order
    assert VoteStore(store.path).display_order("Ann", "1", names) == order
    # 6! = 720 orders: ten other (rater, scene) pairs all equal to this one would be a broken shuffle.
    others = [store.display_order(r, s, names) for r in ["Ben", "Cy"] for s in "12345"]
    assert any(o != order for o in others)
    assert len({tuple(o) for o in others}) > 5


def test_concurrent_writers_lose_nothing(store):
    def cast(rater):
        for i in range(20):
            store.record(rater, str(i), f"gen{i % 3}")

    threads = [threading.Thread(target=cast, args=(f"r{k}",)) for k in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(store.history()) == 80
    assert len(store.latest_votes()) == 80


def test_winners_ties_none_and_latest_vote(store):
    votes = [("A", "1", "x"), ("B", "1", "y"), ("C", "1", "x"), ("C", "1", "y"),  # 1: x 1, y 2 (C changed)
             ("A", "2", "x"), ("B", "2", "y"),                                   # 2: tie -> both, sorted
             ("A", "3", None), ("B", "3", None), ("C", "3", "z"),                # 3: rejected
             ("A", "4", None), ("B", "4", "z")]                                  # 4: none only ties -> z
    for v in votes:
        store.record(*v)
    assert winners(store.path) == {"1": ["y"], "2": ["x", "y"], "3": [], "4": ["z"]}
    counts = count_votes(store.latest_votes())
    assert counts["3"].votes == {"z": 1} and counts["3"].none == 2 and counts["3"].raters == 3


def test_winners_without_a_database_names_the_file(tmp_path):
    missing = tmp_path / "screening.sqlite"
    with pytest.raises(DatasetError, match=f"^{missing}: no screening database"):
        winners(missing)
    assert not missing.exists()


def test_not_a_database_is_a_dataset_error(tmp_path):
    bad = tmp_path / "screening.sqlite"
    bad.write_bytes(b"this is not sqlite" * 100)
    with pytest.raises(DatasetError, match=f"^{bad}: "):
        VoteStore(bad)


# ---------------------------------------------------------------------------- Fleiss' kappa
# Fleiss (1971) as reproduced in the Wikipedia article "Fleiss' kappa": 10 subjects, 14 raters,
# 5 categories; the article gives P-bar = 0.378, P_e = 0.213, kappa = 0.210.
FLEISS_TABLE = [[0, 0, 0, 0, 14], [0, 2, 6, 4, 2], [0, 0, 3, 5, 6], [0, 3, 9, 2, 0], [2, 2, 8, 1, 1],
                [7, 7, 0, 0, 0], [3, 2, 6, 3, 0], [2, 5, 3, 2, 2], [6, 5, 2, 1, 0], [0, 2, 2, 3, 7]]


def test_fleiss_kappa_textbook_example():
    a = fleiss_kappa(FLEISS_TABLE)
    # By hand: column sums 20, 28, 39, 21, 32 of 140 -> P_e = 4170/19600; sum_j n_ij^2 per row
    # 196, 60, 70, 94, 74, 98, 58, 46, 66, 66 -> P_i = (s - 14)/182, P-bar = 688/1820.
    p_bar, p_e = 688 / 1820, 4170 / 19600
    assert a.observed == pytest.approx(p_bar, abs=1e-12)
    assert a.expected == pytest.approx(p_e, abs=1e-12)
    assert a.kappa == pytest.approx((p_bar - p_e) / (1 - p_e), abs=1e-12)
    assert a.kappa == pytest.approx(0.210, abs=5e-4) and a.scenes == 10


def test_fleiss_kappa_unequal_raters_by_hand():
    # Rows: n=2 (P=1), n=2 (P=0), n=3 (P=1); p = (3/7, 4/7); P_e = 25/49; kappa = 23/72.
    # A row with a single rating carries no agreement and must not change anything.
    for table in ([[2, 0], [1, 1], [0, 3]], [[2, 0], [1, 1], [0, 3], [1, 0], [0, 0]]):
        a = fleiss_kappa(table)
        assert a.observed == pytest.approx(2 / 3)
        assert a.expected == pytest.approx(25 / 49)
        assert a.kappa == pytest.approx(23 / 72)
        assert a.scenes == 3


def test_fleiss_kappa_limits():
    assert fleiss_kappa([[3, 0], [0, 3]]).kappa == pytest.approx(1.0)  # perfect agreement
    assert fleiss_kappa([[3, 0], [3, 0]]).kappa is None                  # chance agreement is 1
    assert fleiss_kappa([[1, 0], [0, 1]]).kappa is None                  # nobody overlaps
    assert fleiss_kappa(np.zeros((0, 3))).scenes == 0
    with pytest.raises(ValueError, match="table"):
        fleiss_kappa([[1, -1]])
    assert pairwise_agreement([2, 1, 0]) == pytest.approx(1 / 3)  # pairs AB agree, AC/BC do not
    assert pairwise_agreement([1]) is None


# ---------------------------------------------------------------------------- results report
def _dataset_with_votes(tmp_path):
    for scene in ["1", "2", "10"]:
        folder = tmp_path / "candidates" / scene
        folder.mkdir(parents=True)
        for gen in ["x", "y"]:
            (folder / f"{gen}.png").write_bytes(b"")  # the report lists names only, never decodes
    store = VoteStore(tmp_path / "screening.sqlite")
    for v in [("A", "1", "x"), ("B", "1", "x"), ("C", "1", "y"), ("A", "2", None), ("B", "2", "y"),
              ("A", "gone", "x")]:
        store.record(*v)
    return tmp_path


def test_results_report(tmp_path):
    res = screening_results(_dataset_with_votes(tmp_path))
    assert [r["scene"] for r in res["scenes"]] == ["1", "2", "10", "gone"]  # natural order, then DB-only
    s1, s2, s10, gone = res["scenes"]
    assert s1 == {"scene": "1", "winners": ["x"], "raters": 3, "none_acceptable": 0, "votes": {"x": 2, "y": 1},
                  "agreement": pytest.approx(1 / 3)}
    assert s2["winners"] == ["y"] and s2["none_acceptable"] == 1 and s2["agreement"] == 0
    assert s10["raters"] == 0 and s10["winners"] == [] and s10["agreement"] is None
    assert gone["winners"] == ["x"]
    assert res["raters"] == ["A", "B", "C"] and res["votes_cast"] == 6
    # Categories x, y, none over the scenes with 2+ raters: [2,1,0], [0,1,1] -> by hand
    # P-bar = (1/3 + 0)/2, p = (2/5, 2/5, 1/5), P_e = 9/25.
    a = res["agreement"]
    assert a["measure"] == "fleiss_kappa" and a["scenes"] == 2
    assert a["kappa"] == pytest.approx((1 / 6 - 9 / 25) / (1 - 9 / 25))
    rows = list(csv.DictReader(io.StringIO(to_csv(res))))
    assert rows[0] == {"scene": "1", "winners": "x", "raters": "3", "none_acceptable": "0",
                       "agreement": "0.3333", "votes:x": "2", "votes:y": "1"}
    assert rows[2]["agreement"] == "" and rows[2]["votes:x"] == "0"


def test_results_command_writes_csv_and_json(tmp_path):
    ds = _dataset_with_votes(tmp_path)
    runner = CliRunner()
    out = runner.invoke(screen_command, [str(ds), "--results"])
    assert out.exit_code == 0, out.output
    assert "3 raters, 6 votes cast" in out.stdout and "x (2)" in out.stdout
    assert (ds / "screening-results.csv").read_text().startswith("scene,winners,raters")
    out = runner.invoke(screen_command, [str(ds), "--results", "--format", "json", "-o", "-"])
    assert out.exit_code == 0
    assert json.loads(out.stdout)["scenes"][0]["winners"] == ["x"]
    target = tmp_path / "r.json"
    assert runner.invoke(screen_command, [str(ds), "--results", "--format", "json", "-o", str(target)]).exit_code == 0
    assert json.loads(target.read_text())["agreement"]["scenes"] == 2


def test_results_command_without_votes_is_one_line_error(tmp_path):
    (tmp_path / "candidates" / "1").mkdir(parents=True)
    out = CliRunner().invoke(screen_command, [str(tmp_path), "--results"])
    assert out.exit_code == 1
    assert out.stderr.startswith(f"sice: error: {tmp_path / 'screening.sqlite'}: no screening database")
    assert out.stderr.count("\n") == 1
