"""File transfer on the submit side: spooled inputs into a claim activation, outputs back.

    burst submit (reads the files with the user's own rights)
        ├─ job.submit: input sets ──spool()──▶ <state>/spool/<schedd>/<cluster>/<shared|proc>/
        └─ big files: PUT to object storage;   the set's .stored.json names them (sha256, size)
    match ──spooled()──▶ (executable, small files) in claim.activate, sealed to the pilot,
          claim_transfers()──▶ what the pilot fetches (stored inputs, URLs) and where it may
                               put big outputs (presigned URLs, storage.py)
    job.report (exited, held) ──returned()──▶ stored outputs fetched and checked (sha256),
                              write_outputs()──▶ Out, Err and output files, inside Iwd

The schedd never opens a path a user named to read it: inputs come inside
the submission (or through object storage, put there by burst submit) and
are kept in the spool, which is the schedd's own. Outputs are written inside
the job's Iwd only (confined.py), under names the job asked for. Files inside
messages are capped in size (MAX_INLINE_BYTES); through object storage they
are not, and no file over [storage] inline_max_bytes rides in a message.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import re
import shutil
import uuid
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import BinaryIO

import classad2

from schemas.files import FileFetch, StoredFile, StoredOutput
from schemas.job import JobReport
from services.condor import jobad
from services.runtime.config import StorageConfig

from . import confined
from .confined import Content
from .logic import Transfers, plain_file_name
from .storage import ObjectStore, StorageError, StorageUnavailable

log = logging.getLogger("burst.schedd.transfer")

MAX_INLINE_BYTES = 64 * 1024 * 1024  # per job, inside messages; burst submit refuses more
MANIFEST = ".stored.json"  # in a spool directory: the set's files kept in object storage
SHA256 = re.compile(r"^[0-9a-f]{64}$")
STREAMS = ("stdout", "stderr")


class TransferError(Exception):
    """A file cannot be sent or written; the job is held with this reason."""


# --- inputs -------------------------------------------------------------------------------


def spool(directory: Path, files: Mapping[str, bytes],
          stored: Mapping[str, StoredFile] | None = None) -> None:
    """Keep one input set of a submission (a rerun of the same submission rewrites it): its
    small files, and the names of those in object storage."""
    directory.mkdir(mode=0o700, parents=True, exist_ok=True)
    contents = dict(files)
    if stored:
        contents[MANIFEST] = json.dumps({name: [f.sha256, f.size]
                                         for name, f in stored.items()}).encode()
    for name, data in contents.items():
        if not plain_file_name(name):
            raise ValueError(f"input file name {name!r} is not a plain file name")
        partial = directory / f".{name}.partial"
        partial.write_bytes(data)
        partial.chmod(0o600)
        partial.replace(directory / name)


@dataclass(frozen=True)
class Spooled:
    executable: str  # as the pilot should run it: a transferred file's name, or a path
    files: dict[str, bytes]  # small files, by name
    stored: dict[str, StoredFile]  # the rest, in object storage


def spooled(directory: Path | None, ad: classad2.ClassAd) -> Spooled:
    """A job's input files, from its spool."""
    files: dict[str, bytes] = {}
    stored: dict[str, StoredFile] = {}
    if directory is not None:
        try:
            for path in sorted(directory.iterdir()):
                if not path.name.startswith("."):
                    files[path.name] = path.read_bytes()
            if (directory / MANIFEST).exists():
                stored = {name: StoredFile(sha256, size) for name, (sha256, size)
                          in json.loads((directory / MANIFEST).read_text()).items()}
        except OSError as exc:
            raise TransferError(f"the job's spooled input files are gone ({directory}: "
                                f"{exc.strerror}); submit it again") from None
    cmd = jobad.string(ad, "Cmd")
    name = os.path.basename(cmd)
    sent = jobad.transfers_executable(ad) and (name in files or name in stored)
    return Spooled(name if sent else cmd, files, stored)


def check_stored(stored: Mapping[str, StoredFile], store: ObjectStore | None,
                 cluster: int) -> None:
    """The files a submission says burst submit put in object storage are there, as big as
    it says; TransferError naming the first that is not."""
    if stored and store is None:
        raise TransferError("this schedd has no object storage ([storage] in the "
                            "configuration); send the files inside the submission")
    sizes: dict[str, int] = {}
    for name, file in sorted(stored.items()):
        if not plain_file_name(name) or not SHA256.match(file.sha256) or file.size < 0:
            raise TransferError(f"stored input {name!r}: not a plain name with a sha256 "
                                "(64 lower-case hex digits) and a size")
        assert store is not None
        if file.sha256 not in sizes:
            sizes[file.sha256] = store.size_of(store.input_key(cluster, file.sha256)) or -1
        if sizes[file.sha256] != file.size:
            raise TransferError(f"input file {name} was not uploaded to object storage "
                                f"(expected {file.size} bytes); submit again")


def claim_transfers(store: ObjectStore | None, config: StorageConfig, ad: classad2.ClassAd,
                    job: tuple[int, int], claim_id: str,
                    stored: Mapping[str, StoredFile]) -> Transfers:
    """What the pilot of this claim fetches before the job starts (files in object storage,
    URLs of transfer_input_files) and where it may put big outputs; TransferError when a
    file cannot be had (object storage gone from the configuration, a bad URL). Object
    storage that cannot be reached (the embedded cloud not running) raises
    StorageUnavailable for a job that needs it for its inputs: it waits. A job that needs it
    only for outputs gets no upload URLs, and its outputs return inside the report."""
    cluster, proc = job
    fetch: list[FileFetch] = []
    for name, file in sorted(stored.items()):
        if store is None:
            raise TransferError(f"input file {name} is in object storage, and this schedd "
                                "has none configured now ([storage])")
        fetch.append(FileFetch(name, store.presign_get(store.input_key(cluster, file.sha256)),
                               name, file.sha256, file.size))
    try:
        urls = jobad.input_urls(ad)
    except ValueError as exc:
        raise TransferError(str(exc)) from None
    for name, url in urls.items():
        if url.scheme != "s3":
            fetch.append(FileFetch(name, url.url, url.shown, url.sha256))
            continue
        if store is None:
            raise TransferError(f"input {url.shown}: s3:// inputs come from the pool's object "
                                "storage, and there is none ([storage] in the configuration)")
        bucket, key = url.bucket_and_key
        fetch.append(FileFetch(name, store.presign_get(key, bucket), url.shown, url.sha256))
    uploads: dict[str, str] = {}
    if store is not None:
        run = store.run_prefix(cluster, proc, claim_id)
        try:
            uploads = {slot: store.presign_put(run + slot)
                       for slot in upload_slots(ad, config.output_slots)}
        except StorageUnavailable as exc:  # its outputs return inside the report, capped
            log.warning("event=no_upload_urls job=%d.%d reason=%r", cluster, proc, str(exc))
    return Transfers(fetch=tuple(fetch), uploads=uploads,
                     inline_max_bytes=config.inline_max_bytes if store is not None else 0,
                     fetch_max_bytes=config.url_max_bytes, fetch_timeout_s=config.url_timeout_s)


def upload_slots(ad: classad2.ClassAd, output_slots: int) -> list[str]:
    """The upload URLs a job gets: one per stream it keeps, and one per output file it lists
    (output_slots when it lists none)."""
    listed = jobad.output_names(ad)
    count = len(listed) if listed is not None else output_slots
    return [s for s in STREAMS if s in jobad.stream_names(ad)] + [str(i) for i in range(count)]


def unspool(directory: Path) -> None:
    shutil.rmtree(directory, ignore_errors=True)


# --- outputs ------------------------------------------------------------------------------


@contextlib.contextmanager
def returned(report: JobReport, store: ObjectStore | None, config: StorageConfig,
             ad: classad2.ClassAd, job: tuple[int, int], incoming: Path
             ) -> Iterator[tuple[Content, Content, dict[str, Content]]]:
    """(stdout, stderr, output files) a report brings back: inline, or fetched from object
    storage into `incoming` (the schedd's own directory; removed after), each checked
    against the size and sha256 the pilot reported. TransferError when one is missing, not
    as reported, or came through an upload URL the job was not given."""
    streams, files = report.stored_streams, report.stored_files
    if not streams and not files:
        yield report.stdout, report.stderr, dict(report.output_files)
        return
    if store is None:
        raise TransferError("the pilot returned files through object storage, and this schedd "
                            "has none configured now ([storage])")
    slots = [out.slot for out in (*streams.values(), *files.values())]
    if set(streams) - set(STREAMS) or len(set(slots)) != len(slots) or \
            not set(slots) <= set(upload_slots(ad, config.output_slots)):
        raise TransferError("the pilot returned files through upload URLs the job was not "
                            "given")
    if clash := set(files) & set(report.output_files):
        raise TransferError(f"the pilot returned {sorted(clash)[0]!r} twice")
    run = store.run_prefix(*job, report.claim_id)
    directory = incoming / uuid.uuid4().hex
    directory.mkdir(mode=0o700, parents=True)
    opened: list[BinaryIO] = []

    def fetch(what: str, out: StoredOutput) -> BinaryIO:
        path = directory / out.slot
        try:
            store.fetch(run + out.slot, path, size=out.size, sha256=out.sha256)
        except StorageError as exc:
            raise TransferError(f"{what} from object storage: {exc}") from None
        opened.append(open(path, "rb"))  # noqa: SIM115 (closed below)
        return opened[-1]

    try:
        check_output_names(ad, [*report.output_files, *files])  # before fetching anything
        fetched = {name: fetch(name, out) for name, out in streams.items()}
        yield (fetched.get("stdout", report.stdout), fetched.get("stderr", report.stderr),
               {**report.output_files,
                **{name: fetch(f"output {name}", out) for name, out in files.items()}})
    finally:
        for file in opened:
            file.close()
        shutil.rmtree(directory, ignore_errors=True)


def write_outputs(ad: classad2.ClassAd, stdout: Content, stderr: Content,
                  files: Mapping[str, Content], *, owner: str, private_dir: Path | None = None,
                  protected: frozenset[PurePosixPath] = frozenset()) -> list[str]:
    """Write what a job returned into its Iwd; return the paths written.

    Names are checked first, so a report with one bad name writes nothing: each output
    file must be a plain name the job's transfer_output_files lists (any, if it lists
    none, but never one of `protected`: the submit file, the user log)."""
    base = jobad.iwd(ad)
    plan: list[tuple[Path, PurePosixPath, Content]] = []
    for attr, data in (("Out", stdout), ("Err", stderr)):
        name = jobad.string(ad, attr)
        if name and name != "/dev/null":
            plan.append((*_file_root(ad, name, attr), data))
    check_output_names(ad, files, protected)
    plan += [(base, PurePosixPath(name), data) for name, data in files.items()]
    account = confined.account_of(owner)
    try:
        for root in {root for root, _relative, _data in plan}:
            confined.refuse_private(root, private_dir)
        return [str(confined.write(root, relative, data, account))
                for root, relative, data in plan]
    except confined.Refused as exc:
        raise TransferError(str(exc)) from None


def check_output_names(ad: classad2.ClassAd, names: Iterable[str],
                       protected: frozenset[PurePosixPath] = frozenset()) -> None:
    """Each output file must be a plain name the job's transfer_output_files lists (any, if
    it lists none, but never one of `protected`: the submit file, the user log)."""
    allowed = jobad.output_names(ad)
    for name in names:
        if not plain_file_name(name):
            raise TransferError(f"the pilot returned an output file named {name!r}")
        if allowed is not None and name not in allowed:
            raise TransferError(f"the pilot returned {name!r}, which transfer_output_files "
                                "does not list")
        if allowed is None and PurePosixPath(name) in protected:
            raise TransferError(f"the pilot returned {name!r}, which would replace the "
                                "job's submit file or user log")


def _file_root(ad: classad2.ClassAd, name: str, attr: str) -> tuple[Path, PurePosixPath]:
    try:
        return jobad.file_root(ad, name)
    except ValueError as exc:
        what = {"Out": "output", "Err": "error"}[attr]
        raise TransferError(f"{what} file {exc}") from None


def protected_files(ad: classad2.ClassAd, submit_file: str) -> frozenset[PurePosixPath]:
    """The files in Iwd no output may replace: the submit file and the user log."""
    found = set()
    for path in (submit_file, jobad.string(ad, "UserLog")):
        if path:
            try:
                found.add(jobad.below_iwd(ad, path))
            except ValueError:
                pass  # elsewhere: no output can reach it anyway
    return frozenset(found)
