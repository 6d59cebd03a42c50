"""mdnet-trax: MDNet as a TraX server, the protocol the VOT toolkit drives trackers with.

    mdnet-trax [--weights W.h5|random:SEED] [--mode exact|fast] [--seed S] [--set KEY=VALUE] [--threads N]

The VOT toolkit starts this process (a `trackers.ini` entry, written by `mdnet-vot workspace`) and
talks TraX over its stdin / stdout (libtrax from the vot-trax wheel; nothing else runs in this
process: the toolkit itself lives in its own venv). Per sequence: `initialize` with the first frame
and a region, then `frame` after frame; each reply is the tracked rectangle and its MDNet score as
the `confidence` property.

- Regions in: rectangles, and polygons (VOT's ground truth), which start the tracker from their
  axis-aligned bounding rectangle, as the project's VOT reader does (online/readers/vot.py).
  Regions out: rectangles x, y, w, h.
- Images: file paths (the toolkit's default), decoded to RGB with the readers' checks (a missing,
  empty or truncated file is an error naming it).
- Errors: an unusable region (empty, or outside the image), an unreadable frame, a malformed or
  unexpected TraX message: one line `mdnet-trax: error: ...` on stderr, the TraX session is ended
  with that reason and the process exits with status 1, so the toolkit reports it instead of
  waiting. Bad options or weights exit with status 2 before the TraX handshake.
"""
from __future__ import annotations

import argparse
import os
import select
import sys
import threading

import numpy as np

from online.threads import set_threads, threads_arg

MODES = ("exact", "fast")  # online.tracker_config.MODES (mxnet is not imported before --threads)


class RequestError(ValueError):
    """A TraX request the tracker cannot serve; the message says why."""


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="mdnet-trax",
        description="MDNet as a TraX server (rectangle and polygon regions, image paths) for the VOT "
                    "toolkit; `mdnet-vot workspace` writes the trackers.ini entries that run it.")
    p.add_argument("--weights", default=None,
                   help="weight file (.h5) or random:SEED (default: the shipped model, as mdnet-track)")
    p.add_argument("--mode", choices=MODES, default="exact", help="exact (MDNet) or fast (RoIAlign); default exact")
    p.add_argument("--seed", type=int, default=0, help="the tracker's random stream (default 0)")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="override one tracker config key, as mdnet-track --set (repeatable)")
    threads_arg(p)
    return p


def region_box(region) -> np.ndarray:
    """x, y, w, h of a TraX rectangle, or the axis-aligned bounding rectangle of a polygon."""
    from trax import Polygon, Rectangle

    # isinstance, not `.type`: vot-trax 4.0.2 makes `type` a property on some classes, a method on others.
    if isinstance(region, Rectangle):
        return np.asarray(region.bounds(), dtype=np.float64)
    if isinstance(region, Polygon):
        pts = np.asarray([region.get(i) for i in range(region.size())], dtype=np.float64)
        lo, hi = pts.min(axis=0), pts.max(axis=0)
        return np.array([lo[0], lo[1], hi[0] - lo[0], hi[1] - lo[1]])
    raise RequestError(f"region {region}: only rectangles and polygons are supported")


def request_image(images: dict) -> np.ndarray:
    """The color channel of a request as RGB; RequestError when it is missing or unreadable."""
    from trax import FileImage

    from online.sequence import DataError, decode_image

    image = (images or {}).get("color")
    if image is None:
        raise RequestError("the request carries no color image")
    if not isinstance(image, FileImage):
        raise RequestError(f"image {image}: only file paths are supported")
    try:
        return decode_image(image.path())
    except DataError as e:  # missing, empty or truncated file: named in the message
        raise RequestError(str(e)) from None


def exit_when_client_gone(grace_s: float = 2.0) -> threading.Thread:
    """Exit the process (status 1) once stdin, the client's end, is closed and stays so for `grace_s`.

    libtrax (vot-trax 4.0.2) loops forever in `trax_server_wait` when the input ends inside a
    message (an unterminated quote, a cut-off initialize): measured, the process never returns. A
    closed pipe shows as POLLHUP without consuming any input, so this thread can watch for it while
    libtrax owns the reads (ctypes releases the GIL during the C call). A normal session ends with
    a `quit` message before the pipe closes, and the process is gone by then."""
    def watch():
        poller = select.poll()
        poller.register(sys.stdin.fileno(), select.POLLHUP | select.POLLERR)
        while True:
            events = poller.poll(1000)
            if any(ev & (select.POLLHUP | select.POLLERR) for _, ev in events):
                threading.Event().wait(grace_s)  # a complete last message is served meanwhile
                print("mdnet-trax: error: the client closed the connection in the middle of a TraX "
                      "message (malformed or cut-off input)", file=sys.stderr, flush=True)
                os._exit(1)

    t = threading.Thread(target=watch, name="trax-client-watch", daemon=True)
    t.start()
    return t


def serve(server, tracker) -> None:
    """Answer TraX requests until the client quits; RequestError on one that cannot be served."""
    from trax import Rectangle, TraxException, TraxStatus

    started = False
    while True:
        try:
            request = server.wait()
        except TraxException as e:  # libtrax's own words are terse ("... command: Unknown")
            raise RequestError(f"malformed or unexpected TraX message, or the client is gone ({e})") from None
        if request.type == TraxStatus.QUIT:
            return
        image = request_image(request.image)
        if request.type == TraxStatus.INITIALIZE:
            if not request.objects or len(request.objects) != 1:
                raise RequestError(f"initialize with {len(request.objects or [])} regions: one target expected")
            box = region_box(request.objects[0][0])
            try:
                tracker.initialize(image, box)  # ValueError: empty box or outside the image
            except ValueError as e:
                raise RequestError(str(e)) from None
            started = True
            server.status([(Rectangle.create(*box), {})])
        elif request.type == TraxStatus.FRAME:
            if not started:
                raise RequestError("frame before initialize")
            result = tracker.track(image)
            server.status([(Rectangle.create(*(float(v) for v in result.box)), {"confidence": float(result.score)})])
        else:
            raise RequestError(f"unexpected TraX request {request.type!r}")


def main(args: argparse.Namespace) -> int:
    set_threads(args.threads)
    from trax import Image, Region, Server, TraxException

    from online.loading import build_tracker

    try:
        # Before the handshake: bad weights or config end here, with a message, not mid-session.
        tracker = build_tracker(args.weights, args.mode, args.seed, overrides=args.overrides)
    except (ValueError, OSError) as e:
        print(f"mdnet-trax: {e}", file=sys.stderr)
        return 2
    try:
        server = Server([Region.RECTANGLE, Region.POLYGON], [Image.PATH], ["color"],
                        tracker_name=f"MDNet-{args.mode}", tracker_description="MDNet (mdnet-hvd)",
                        tracker_family="mdnet")
    except TraxException as e:
        print(f"mdnet-trax: error: TraX handshake failed: {e}", file=sys.stderr)
        return 1
    exit_when_client_gone()
    try:
        serve(server, tracker)
    except (RequestError, TraxException) as e:
        print(f"mdnet-trax: error: {e}", file=sys.stderr, flush=True)
        try:
            server.quit(reason=str(e))  # the client learns why the session ends
        except TraxException:
            pass  # the pipe is gone: nothing left to tell
        return 1
    server.quit()
    return 0


def run(argv=None):
    sys.exit(main(build_parser().parse_args(argv)))


if __name__ == "__main__":
    run()
