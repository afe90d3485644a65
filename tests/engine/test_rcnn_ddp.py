"""FasterRCNN, YOLO and SSD fit under torchrun: 2 CPU processes, gloo, DistributedDataParallel."""

import subprocess
import sys
import textwrap

import pytest

torch = pytest.importorskip("torch")
dist = pytest.importorskip("torch.distributed")

SCRIPT = textwrap.dedent("""
    import os, sys, torch
    torch.set_num_threads(1)
    from pydetect.data import digits_in_clutter
    from pydetect.detectors import SSD, YOLO, FasterRCNN
    out, name = sys.argv[1], sys.argv[2]
    ds = digits_in_clutter("train", n_images=6, seed=5)
    common = dict(pretrain=None, max_iter=4, batch_size=1, progress=False, seed=0,
                  checkpoint_dir=os.path.join(out, "ckpt"))
    if name == "FasterRCNN":
        det = FasterRCNN(rpn_pre_nms_top_n=(200, 100), rpn_post_nms_top_n=(50, 50), **common)
    else:
        det = {"YOLO": YOLO, "SSD": SSD}[name](**common)
    det.fit(ds)
    rank = torch.distributed.get_rank()
    world = torch.distributed.get_world_size()
    flat = torch.cat([p.detach().flatten() for p in det.model_.parameters()])
    torch.save({"world": world, "params": flat, "iterations": det.history_["iterations"]},
               os.path.join(out, f"rank{rank}.pt"))
    torch.distributed.destroy_process_group()
""")


@pytest.mark.skipif(not dist.is_available() or not dist.is_gloo_available(), reason="needs torch.distributed gloo")
@pytest.mark.parametrize("name, checkpoint", [("FasterRCNN", "faster_rcnn.ckpt"), ("YOLO", "yolo.ckpt"),
                                              ("SSD", "ssd.ckpt")])
def test_fit_under_torchrun_two_processes(tmp_path, subprocess_env, name, checkpoint):
    script = tmp_path / "train_ddp.py"
    script.write_text(SCRIPT)
    env = dict(subprocess_env, OMP_NUM_THREADS="1")
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--standalone",
           str(script), str(tmp_path), name]
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    r0 = torch.load(tmp_path / "rank0.pt")
    r1 = torch.load(tmp_path / "rank1.pt")
    assert r0["world"] == r1["world"] == 2
    assert r0["iterations"] == r1["iterations"] == 4
    # Gradients are all-reduced, so both replicas end with the same weights.
    torch.testing.assert_close(r0["params"], r1["params"])
    assert (tmp_path / "ckpt" / checkpoint).exists()
