"""The dead-letter storm guard's rule, without I/O: when a run of dead letters crosses a
limit, and at which record."""

from consumer.core.guard import DeadLetterGuard, GuardLimits, PartitionRun, first_crossing

P = ("t", 0)


def run_of(*dead: bool) -> list[tuple[int, bool]]:
    return list(enumerate(dead))


def test_off_by_default_never_crosses() -> None:
    limits = GuardLimits()
    assert not limits.enabled
    assert first_crossing(limits, PartitionRun(), run_of(*[True] * 10_000)) is None


def test_the_dead_letter_past_max_consecutive_is_the_one_held() -> None:
    limits = GuardLimits(max_consecutive=3)
    assert first_crossing(limits, PartitionRun(), run_of(True, True, True)) is None
    assert first_crossing(limits, PartitionRun(), run_of(True, True, True, True)) == 3


def test_a_good_record_between_dead_letters_starts_the_count_again() -> None:
    limits = GuardLimits(max_consecutive=2)
    outcomes = run_of(True, True, False, True, True, False, True, True, True)
    assert first_crossing(limits, PartitionRun(), outcomes) == 8


def test_a_run_carries_over_from_the_batches_committed_before() -> None:
    guard = DeadLetterGuard(GuardLimits(max_consecutive=3))
    guard.committed(P, [(0, True), (1, True)])
    assert guard.first_crossing(P, [(2, True)]) is None
    assert guard.first_crossing(P, [(2, True), (3, True)]) == 3
    # Checking changes nothing: only what is committed counts.
    assert guard.first_crossing(P, [(2, True), (3, True)]) == 3
    guard.forget(P)  # revoked: the next owner counts afresh
    assert guard.first_crossing(P, [(2, True), (3, True)]) is None


def test_the_ratio_applies_once_the_window_is_full() -> None:
    limits = GuardLimits(max_ratio=0.5, window=10)
    # Half dead in the first ten: at the limit, not past it.
    half = run_of(*[n % 2 == 0 for n in range(10)])
    assert first_crossing(limits, PartitionRun(), half) is None
    # Dead letters before the window fills do not count as a ratio yet.
    assert first_crossing(limits, PartitionRun(), run_of(*[True] * 5)) is None
    # Six of the last ten dead: the sixth (at offset 10, the window full) crosses.
    outcomes = run_of(*[False] * 5, *[True] * 6)
    assert first_crossing(limits, PartitionRun(), outcomes) == 10


def test_the_window_slides() -> None:
    guard = DeadLetterGuard(GuardLimits(max_ratio=0.3, window=10))
    guard.committed(P, run_of(*[False] * 7, *[True] * 3))  # 3 of the last 10: the limit
    assert guard.first_crossing(P, [(10, True)]) == 10  # 4 of the last 10
    # Ten good records push the dead letters out of the window: three more are allowed.
    later = [(10 + n, False) for n in range(10)] + [(20, True), (21, True), (22, True)]
    assert guard.first_crossing(P, later) is None
    assert guard.first_crossing(P, [*later, (23, True)]) == 23


def test_only_a_dead_letter_crosses_a_limit() -> None:
    limits = GuardLimits(max_ratio=0.1, window=5)
    run = PartitionRun()
    for _, dead in run_of(True, True, True, True):
        run.add(dead, limits.window)
    # The window fills with a good record: it is not the one held back.
    assert first_crossing(limits, run, [(4, False)]) is None
    assert first_crossing(limits, run, [(4, False), (5, True)]) == 5
