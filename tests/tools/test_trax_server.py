"""mdnet-trax (tools/toolkits/trax_server.py) driven by vot-trax's own TraX client, as the VOT
toolkit drives it: a polygon-initialised session on real frames of ../shared/data/OTB/Crossing,
and the errors (a malformed message, a region outside the image, an empty frame file) that must end
the process with a message instead of leaving it waiting. Every call has a timeout."""
import subprocess
import sys

import numpy as np
import pytest

trax = pytest.importorskip("trax")  # vot-trax, installed by `make install`

from trax import FileImage, Polygon, Rectangle, TraxException  # noqa: E402
from trax.client import Client  # noqa: E402

from online.boxes import iou  # noqa: E402
from online.readers import read_sequence  # noqa: E402
from tests.conftest import SHARED_DATA  # noqa: E402

CROSSING = SHARED_DATA / "OTB" / "Crossing"
SERVER = [sys.executable, "-m", "tools.toolkits.trax_server", "--threads", "1"]
TIMEOUT = 120


def start(*args, stderr=subprocess.PIPE):
    return subprocess.Popen(SERVER + list(args), stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=stderr)


def frame(i):
    return {"color": FileImage.create(str(CROSSING / "img" / f"{i:04d}.jpg"))}


def finish(p):
    """(exit status, stderr) of a server that must end by itself within TIMEOUT seconds."""
    try:
        p.wait(timeout=TIMEOUT)  # its stderr is a few lines: no pipe to drain meanwhile
    except subprocess.TimeoutExpired:
        p.kill()
        pytest.fail("mdnet-trax hung")
    return p.returncode, p.stderr.read().decode()


def test_polygon_session_tracks_and_reports_rectangles(shared_data):
    gt = read_sequence(CROSSING).boxes
    x, y, w, h = gt[0]
    p = start("--mode", "fast")  # the shipped model
    client = Client(stream=(p.stdin.fileno(), p.stdout.fileno()), log=lambda line: None)
    # A VOT ground-truth polygon: the tracker starts from its bounding rectangle, which it echoes.
    polygon = Polygon.create([(x, y), (x + w, y), (x + w, y + h), (x, y + h)])
    state, _ = client.initialize(frame(1), [(polygon, {})], {})
    assert isinstance(state[0][0], Rectangle)
    np.testing.assert_allclose(state[0][0].bounds(), gt[0], atol=1e-3)
    ious = []
    for i in range(2, 8):
        state, _ = client.frame(frame(i), {}, [])
        region, props = state[0]
        assert isinstance(region, Rectangle) and float(props["confidence"]) > 0
        ious.append(iou(np.asarray(region.bounds())[None], gt[i - 1])[0])
    client.quit()
    rc, err = finish(p)
    assert rc == 0, err
    assert min(ious) > 0.5, ious


@pytest.mark.parametrize("payload", [
    b"@@TRAX:frobnicate\n",                                 # an unknown message
    b'@@TRAX:initialize "image" "region\n',                 # an unterminated quote, then EOF
    b"no trax here\n",                                      # no TraX at all, then EOF
])
def test_malformed_message_ends_the_process(payload):
    p = start("--weights", "random:0", "--mode", "fast")
    p.stdin.write(payload)
    p.stdin.close()
    rc, err = finish(p)
    assert rc == 1 and "mdnet-trax: error:" in err, err


def test_region_outside_the_image_is_refused(shared_data):
    p = start("--weights", "random:0", "--mode", "fast")
    client = Client(stream=(p.stdin.fileno(), p.stdout.fileno()), log=lambda line: None)
    with pytest.raises(TraxException):
        client.initialize(frame(1), [(Rectangle.create(500, 300, 20, 20), {})], {})
    rc, err = finish(p)
    assert rc == 1 and "outside the 360x240 image" in err, err


def test_empty_frame_file_is_refused(tmp_path, shared_data):
    empty = tmp_path / "0002.jpg"
    empty.write_bytes(b"")
    p = start("--weights", "random:0", "--mode", "fast", "--set", "maxiter_init=2")
    client = Client(stream=(p.stdin.fileno(), p.stdout.fileno()), log=lambda line: None)
    client.initialize(frame(1), [(Rectangle.create(205, 151, 17, 50), {})], {})
    with pytest.raises(TraxException):
        client.frame({"color": FileImage.create(str(empty))}, {}, [])
    rc, err = finish(p)
    assert rc == 1 and "empty file" in err and str(empty) in err, err


def test_bad_weights_fail_before_the_handshake(tmp_path):
    p = start("--weights", str(tmp_path / "missing.h5"))
    p.stdin.close()
    rc, err = finish(p)
    assert rc == 2 and "missing.h5" in err, err
