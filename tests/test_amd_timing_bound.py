"""The timing bound (benchmarks/amd/timing_bound.py) on hand-made shapes."""
import numpy as np
import pytest

from benchmarks.amd.timing_bound import accuracy_bound, earliest_machine_evidence, first_gap


def shape(sentences, sounds=()):
    return {"file": "x", "category": "personal", "sentences": list(sentences), "sounds": list(sounds)}


def test_machines_like_people_at_the_decision_are_wrong_unless_waiting_tells_them():
    people = np.array([1.5, 1.52, 1.54, 0.5, 0.63, 0.7, 0.8, 0.9, 0.95, 0.99])
    machines = [
        shape([(0.0, 1.5), (3.0, 4.0)]),            # like three 1.5-s people, speaks again after 1.5 s
        shape([(0.0, 1.51)]),                       # like them, then silence for ever
        shape([(0.0, 0.61), (2.0, 3.0)]),           # like a 0.63-s person, speaks again later
        shape([(0.0, 0.62), (2.0, 3.0)]),
        shape([(0.0, 1.0), (1.3, 2.5)]),            # speaks again within the wait: told
        shape([(0.0, 4.5)]),                        # longer than any person: told
        shape([(0.0, 2.0)], [(2.4, "beep")]),       # beep within the wait: told
    ]
    assert first_gap(machines[0]) == (1.5, 1.5) and first_gap(machines[1]) == (1.51, None)
    # nobody may wait: at 1.5 s one machine is cheaper to lose than three people; at 0.6 s two
    # machines against one person: wait, and the person is NOTSURE
    strict = accuracy_bound(machines, people, n_people=10, wait_s=1.0, wait_share=0.0)
    assert strict["machines_alike_at_decision"] == 4 and strict["machines_never_followed_by_anything"] == 1
    assert strict["errors_at_least"] == 1 + 1 + 1
    assert strict["accuracy_at_most"] == pytest.approx((17 - 3) / 17)
    # one person may wait: the 0.6-s one, so the two machines there cost nothing
    one = accuracy_bound(machines, people, n_people=10, wait_s=1.0, wait_share=0.1)
    assert one["errors_at_least"] == 2
    # three may wait: the 1.5-s bin saves as much as the 0.6-s bin, and both cannot fit
    three = accuracy_bound(machines, people, n_people=10, wait_s=1.0, wait_share=0.3)
    assert three["errors_at_least"] == 2
    everyone = accuracy_bound(machines, people, n_people=10, wait_s=1.0, wait_share=1.0)
    assert everyone["errors_at_least"] == 1          # the silent one is lost whatever happens


def test_earliest_machine_evidence():
    assert earliest_machine_evidence(shape([(1.0, 2.5), (2.8, 4.0)]), 4.0) == pytest.approx(1.9)
    # a short first sentence and a long pause is a double hello until a third sentence
    assert earliest_machine_evidence(shape([(0.0, 0.8), (1.5, 2.2), (2.5, 3.0)]), 4.0) == pytest.approx(2.6)
    assert earliest_machine_evidence(shape([(0.0, 2.0)], [(2.5, "music")]), 4.0) == pytest.approx(2.9)
    assert earliest_machine_evidence(shape([(0.0, 2.0)]), 4.0) is None
