"""URLs in transfer_input_files: http://, https:// and s3:// are left to the pilot, named by
the last part of their path, with `URL#sha256=HEX` for a checksum; anything else is refused at
submit naming it."""

from __future__ import annotations

import classad2
import pytest

from services.cli import inputs
from services.condor import jobad
from services.condor.submit import SubmitError, parse_submit_file

SUM = "ab" * 32


def ad(*inputs_: str) -> classad2.ClassAd:
    return classad2.ClassAd({"Cmd": "/bin/cat", "TransferExecutable": False, "Iwd": "/work",
                             "TransferInput": ",".join(inputs_)})


def test_urls_are_named_by_their_last_path_part_and_keep_their_checksum():
    found = jobad.input_urls(ad("local.txt", f"https://data.example.org/db/nt.tar.gz#sha256={SUM}",
                                "s3://bucket/ref/genome%20v2.fa", "http://h:8080/x/table.csv"))
    assert {name: (url.url, url.sha256) for name, url in found.items()} == {
        "nt.tar.gz": ("https://data.example.org/db/nt.tar.gz", SUM),
        "genome v2.fa": ("s3://bucket/ref/genome%20v2.fa", ""),
        "table.csv": ("http://h:8080/x/table.csv", "")}
    assert found["genome v2.fa"].bucket_and_key == ("bucket", "ref/genome v2.fa")
    assert jobad.input_files(ad("local.txt", "http://h/x/table.csv")) == {
        "local.txt": jobad.Path("/work/local.txt")}


def test_a_url_is_shown_without_what_may_be_secret():
    (url,) = jobad.input_urls(ad("https://user:pw@h.org:8443/a/b.dat?X-Amz-Signature=s3cr3t"
                                 f"#sha256={SUM}")).values()
    assert url.shown == "https://h.org:8443/a/b.dat"


@pytest.mark.parametrize("given, problem", [
    ("osdf:///ospool/x.dat", "the osdf:// scheme is not served here"),
    ("http://h/x#md5=abc", "#md5=abc is not #sha256=<64 hex digits>"),
    (f"http://h/x#sha256={SUM[:10]}", "is not #sha256="),
    ("https://h/dir/", "names no file"),
    ("s3://bucket", "s3://BUCKET/KEY"),
])
def test_a_url_that_cannot_be_fetched_is_refused_naming_it(given, problem):
    with pytest.raises(ValueError, match=problem):
        jobad.input_urls(ad(given))


def test_two_inputs_that_would_get_one_name_are_refused():
    with pytest.raises(ValueError, match="would both be 'x.csv'"):
        jobad.input_urls(ad("http://a/x.csv", "https://b/x.csv"))
    with pytest.raises(ValueError, match="would both be 'x.csv'"):
        jobad.input_files(ad("x.csv", "http://a/x.csv"))


def test_burst_submit_reads_the_files_and_leaves_the_urls_in_the_ad(tmp_path):
    (tmp_path / "local.txt").write_text("here")
    path = tmp_path / "job.sub"
    path.write_text("executable = /bin/cat\ntransfer_executable = false\n"
                    "transfer_input_files = local.txt, "
                    f"https://data.example.org/db/nt.tar.gz#sha256={SUM}\nqueue\n")
    specs = parse_submit_file(path, cluster=3, owner="a")
    found = inputs.read(specs, str(path), 3)
    assert found.sets == [{"local.txt": b"here"}]
    assert "nt.tar.gz" in jobad.input_urls(specs[0].ad)


def test_other_schemes_are_refused_when_the_file_is_read(tmp_path):
    path = tmp_path / "job.sub"
    path.write_text("executable = /bin/cat\ntransfer_executable = false\n"
                    "transfer_input_files = stash:///osgconnect/public/x.dat\nqueue\n")
    with pytest.raises(SubmitError, match="stash:// scheme is not served here"):
        parse_submit_file(path, cluster=3, owner="a")
