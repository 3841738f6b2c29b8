"""A web worker tunes its garbage collector once loaded (gunicorn.conf.py post_worker_init)."""
import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[3]


def test_a_worker_freezes_the_loaded_app_and_collects_young_objects_less_often():
    # In a process of its own: the hook changes the interpreter's GC for good.
    script = ("import gc, json, runpy; conf = runpy.run_path('gunicorn.conf.py'); before = gc.get_threshold(); "
              "[object() for _ in range(10)]; conf['post_worker_init'](None); "
              "print(json.dumps([before, gc.get_threshold(), gc.get_freeze_count()]))")
    out = subprocess.run([sys.executable, "-c", script], cwd=ROOT, capture_output=True, text=True, check=True)
    before, after, frozen = json.loads(out.stdout)
    assert before[0] == 700 and after == [50_000, 20, 100]
    assert frozen > 1000  # the modules loaded so far are out of every collection
