"""PublishStage: batches published on their own thread, those that wait together in one pipeline."""
import threading

from workers.stream.publisher import PublishResult, PublishStage


class Recorder:
    """Stands in for RedisPublisher: records each pipeline; the first one waits until released."""

    def __init__(self, fail_first: bool = False) -> None:
        self.calls: list[tuple[list, dict]] = []
        self.release = threading.Event()
        self.fail_first = fail_first

    def publish(self, messages, latest):
        self.release.wait(5)
        self.calls.append((list(messages), dict(latest)))
        if self.fail_first and len(self.calls) == 1:
            raise RuntimeError("a bug, not Redis")
        return PublishResult.PUBLISHED


def test_batches_that_wait_together_go_in_one_pipeline_with_the_newest_latest():
    recorder = Recorder()
    stage = PublishStage(recorder, max_batches=4)
    results: list[tuple[str, PublishResult]] = []
    stage.publish([("ticker:a:options", "m1")], {1: "old"}, lambda r: results.append(("first", r)))
    for name, latest in (("second", {1: "newer", 2: "x"}), ("third", {1: "newest"})):
        stage.publish([("ticker:a:options", f"m-{name}")], latest, lambda r, name=name: results.append((name, r)))
    recorder.release.set()
    stage.stop()
    assert [len(messages) for messages, _ in recorder.calls] in ([1, 2], [3])  # the first may go alone
    assert recorder.calls[-1][1][1] == "newest" and recorder.calls[-1][1].get(2, "x") == "x"
    assert sorted(results) == [(n, PublishResult.PUBLISHED) for n in ("first", "second", "third")]


def test_an_unexpected_error_is_a_dropped_batch_and_the_stage_goes_on():
    recorder = Recorder(fail_first=True)
    recorder.release.set()
    stage = PublishStage(recorder)
    results = []
    first_done = threading.Event()
    stage.publish([("c", "m1")], {}, lambda r: (results.append(r), first_done.set()))
    assert first_done.wait(5)
    stage.publish([("c", "m2")], {}, results.append)
    stage.stop()
    assert results == [PublishResult.REDIS_ERROR, PublishResult.PUBLISHED]
