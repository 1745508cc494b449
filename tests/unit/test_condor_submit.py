"""Submit files → job ads: what `burst submit` users see in their jobs and their errors."""

from __future__ import annotations

import os
from pathlib import Path

import classad2
import pytest

from services.condor import jobad
from services.condor.macros import SlotMacroError, substitute_slot_macros
from services.condor.submit import JobSpec, SubmitError, parse_submit_file, parse_submit_text
from services.condor.syntax import (
    format_arguments,
    parse_arguments,
    parse_disk_kib,
    parse_environment,
    parse_memory_mib,
)

NOW = 1_700_000_000
REQUIREMENTS_TAIL = ("(TARGET.Cpus >= MY.RequestCpus) && (TARGET.Memory >= MY.RequestMemory)"
                     " && (TARGET.Disk >= MY.RequestDisk)")


@pytest.fixture
def workdir(tmp_path: Path) -> Path:
    script = tmp_path / "run.sh"
    script.write_text("#!/bin/sh\necho hi\n")
    script.chmod(0o755)
    return tmp_path


def submit(workdir: Path, text: str, name: str = "jobs.sub") -> list[JobSpec]:
    path = workdir / name
    path.write_text(text)
    return parse_submit_file(path, cluster=42, owner="alice", now=NOW)


def failure(workdir: Path, text: str) -> SubmitError:
    with pytest.raises(SubmitError) as caught:
        submit(workdir, text)
    return caught.value


def assert_error(workdir: Path, text: str, line: int | None, *fragments: str) -> None:
    err = failure(workdir, text)
    where = f"{workdir / 'jobs.sub'} line {line}: " if line else f"{workdir / 'jobs.sub'}: "
    assert err.line == line, str(err)
    assert str(err).startswith(where), str(err)
    for fragment in fragments:
        assert fragment in str(err)


def column(specs: list[JobSpec], attr: str) -> list:
    return [spec.ad.eval(attr) for spec in specs]


def argvs(specs: list[JobSpec]) -> list[list[str]]:
    """Each job's argv, as the schedd reads it from the ad for the pilot."""
    return [jobad.arguments(spec.ad) for spec in specs]


# --- the default ad --------------------------------------------------------------------------


def test_minimal_file_gives_one_idle_vanilla_job_with_htcondor_defaults(workdir):
    [spec] = submit(workdir, "executable = run.sh\nqueue\n")
    ad = spec.ad
    assert spec.proc == 0
    assert (ad["ClusterId"], ad["ProcId"], ad["Owner"]) == (42, 0, "alice")
    assert (ad["JobUniverse"], ad["JobStatus"], ad["QDate"]) == (5, 1, NOW)
    assert ad["Cmd"] == str(workdir / "run.sh")
    assert ad["Iwd"] == str(workdir)
    assert (ad["RequestCpus"], ad["RequestMemory"], ad["RequestDisk"]) == (1, 128, 1024 * 1024)
    assert (ad["In"], ad["Out"], ad["Err"]) == ("/dev/null", "/dev/null", "/dev/null")
    assert (ad["Arguments"], ad["Environment"]) == ("", "")
    assert (ad["JobPrio"], ad.eval("Rank"), ad["OnExitRemove"], ad["OnExitHold"]) == (
        0, 0.0, True, False)
    assert (ad["PeriodicRemove"], ad["PeriodicHold"], ad["PeriodicRelease"]) == (
        False, False, False)
    assert (ad["NumJobStarts"], ad["NumJobCompletions"], ad["EnteredCurrentStatus"]) == (
        0, 0, NOW)
    assert str(ad.lookup("Requirements")) == f"(true) && {REQUIREMENTS_TAIL}"
    for absent in ("Args", "Env", "TransferInput", "TransferOutput", "UserLog", "User",
                   "JobMaxRetries", "HoldReason"):
        assert absent not in ad


def test_submit_host_adds_user_and_global_job_id(workdir):
    (workdir / "jobs.sub").write_text("executable = run.sh\nqueue\n")
    [spec] = parse_submit_file(workdir / "jobs.sub", cluster=7, owner="bob",
                               submit_host="login1", now=NOW)
    assert spec.ad["User"] == "bob@login1"
    assert spec.ad["GlobalJobId"] == f"login1#7.0#{NOW}"


def test_absolute_executable_on_the_execute_side_is_kept_even_if_absent_here(workdir):
    [spec] = submit(workdir, "executable = /opt/site/bin/tool\ntransfer_executable = false\n"
                             "queue\n")
    assert spec.ad["Cmd"] == "/opt/site/bin/tool"
    assert spec.ad["TransferExecutable"] is False


def test_ad_text_round_trips_through_classad_parser(workdir):
    [spec] = submit(workdir, 'executable = run.sh\narguments = "a \'b c\'"\nqueue\n')
    again = classad2.ClassAd(spec.ad_text)
    assert again["Arguments"] == "a 'b c'"
    assert jobad.arguments(again) == ["a", "b c"]
    assert again["Cmd"] == str(workdir / "run.sh")


def test_parse_submit_text_resolves_against_the_given_directory(workdir):
    specs = parse_submit_text("executable = run.sh\nqueue 2\n", cluster=3, owner="o",
                              initialdir_default=workdir, now=NOW)
    assert column(specs, "Cmd") == [str(workdir / "run.sh")] * 2
    assert column(specs, "ProcId") == [0, 1]


def test_parse_submit_text_names_its_source_in_errors(workdir):
    with pytest.raises(SubmitError) as caught:
        parse_submit_text("executable = run.sh\nnonsense\nqueue\n", cluster=3, owner="o",
                          initialdir_default=workdir, source_name="stdin")
    assert str(caught.value).startswith("stdin line 2: ")


# --- queue forms -----------------------------------------------------------------------------


def test_queue_n_numbers_procs_and_expands_process_and_cluster(workdir):
    specs = submit(workdir, "executable = run.sh\n"
                            "output = out.$(Cluster).$(Process)\n"
                            "error = err.$(ClusterId).$(ProcId)\nqueue 3\n")
    assert [spec.proc for spec in specs] == [0, 1, 2]
    assert column(specs, "Out") == ["out.42.0", "out.42.1", "out.42.2"]
    assert column(specs, "Err") == ["err.42.0", "err.42.1", "err.42.2"]


def test_queue_n_in_list_gives_n_procs_per_item_with_step(workdir):
    specs = submit(workdir, "executable = run.sh\narguments = $(Item) $(Step) $(Process)\n"
                            "queue 2 in (x y)\n")
    assert argvs(specs) == [["x", "0", "0"], ["x", "1", "1"], ["y", "0", "2"], ["y", "1", "3"]]


def test_queue_var_in_list_uses_the_named_variable(workdir):
    specs = submit(workdir, "executable = run.sh\narguments = $(color) $(ItemIndex)\n"
                            "queue color in (red, green blue)\n")
    assert argvs(specs) == [["red", "0"], ["green", "1"], ["blue", "2"]]


def test_queue_in_list_spanning_lines(workdir):
    specs = submit(workdir, "executable = run.sh\narguments = $(Item)\n"
                            "queue in (\n  a\n  # a comment\n\n  b\n)\n")
    assert argvs(specs) == [["a"], ["b"]]


def test_queue_from_inline_rows_with_several_variables(workdir):
    specs = submit(workdir, "executable = run.sh\narguments = $(a) $(b)\n"
                            "queue a,b from (\n  1 2\n  3, 4\n\n)\n")
    assert argvs(specs) == [["1", "2"], ["3", "4"]]


def test_queue_from_file_reads_relative_to_submit_dir_not_cwd(workdir, tmp_path_factory,
                                                              monkeypatch):
    (workdir / "rows.txt").write_text("p 1\nq 2\n")
    elsewhere = tmp_path_factory.mktemp("elsewhere")
    monkeypatch.chdir(elsewhere)
    specs = submit(workdir, "executable = run.sh\narguments = $(name) $(n)\n"
                            "queue name n from rows.txt\n")
    assert argvs(specs) == [["p", "1"], ["q", "2"]]
    assert Path.cwd() == elsewhere


def test_queue_matching_globs_relative_to_submit_dir_and_gives_relative_items(
        workdir, tmp_path_factory, monkeypatch):
    for name in ("b.dat", "a.dat", "c.txt"):
        (workdir / name).write_text("x")
    (workdir / "sub.dat").mkdir()
    monkeypatch.chdir(tmp_path_factory.mktemp("elsewhere"))
    specs = submit(workdir, "executable = run.sh\ninput = $(f)\narguments = $(f)\n"
                            "queue f matching files *.dat\n")
    assert argvs(specs) == [["a.dat"], ["b.dat"]]
    assert column(specs, "In") == ["a.dat", "b.dat"]


def test_queue_matching_dirs_gives_directories_only(workdir):
    for name in ("d1", "d2"):
        (workdir / name).mkdir()
    (workdir / "d3.txt").write_text("x")
    specs = submit(workdir, "executable = run.sh\narguments = $(Item)\nqueue matching dirs d*\n")
    assert argvs(specs) == [["d1/"], ["d2/"]]


def test_queue_matching_nothing_among_other_queues_adds_no_procs(workdir):
    specs = submit(workdir, "executable = run.sh\nqueue f matching *.none\nqueue 2\n")
    assert [spec.proc for spec in specs] == [0, 1]


def test_queue_slice_picks_items_like_python(workdir):
    specs = submit(workdir, "executable = run.sh\narguments = $(a)\n"
                            "queue a in [1:3] (w x y z)\n")
    assert argvs(specs) == [["x"], ["y"]]


def test_queue_count_may_be_a_macro(workdir):
    specs = submit(workdir, "executable = run.sh\nN = 4\nqueue $(N)\n")
    assert len(specs) == 4


def test_multiple_queue_statements_accumulate_commands_and_number_procs_on(workdir):
    specs = submit(workdir, "executable = run.sh\narguments = first $(Process)\n"
                            "request_memory = 1G\nqueue 2\n"
                            "arguments = second $(Process) $(Item)\nqueue in (p q)\n"
                            "request_cpus = 4\nqueue\n")
    assert [spec.proc for spec in specs] == [0, 1, 2, 3, 4]
    assert argvs(specs) == [["first", "0"], ["first", "1"], ["second", "2", "p"],
                            ["second", "3", "q"], ["second", "4"]]
    assert column(specs, "RequestMemory") == [1024] * 5
    assert column(specs, "RequestCpus") == [1, 1, 1, 1, 4]


# --- arguments and environment ---------------------------------------------------------------


def test_new_syntax_arguments_group_with_single_quotes_and_escape_by_doubling(workdir):
    [spec] = submit(workdir, "executable = run.sh\n"
                             "arguments = \"one \"\"two\"\" 'spacey ''quoted'' argument' ''\"\n"
                             "queue\n")
    assert jobad.arguments(spec.ad) == ["one", '"two"', "spacey 'quoted' argument", ""]
    assert spec.ad["Arguments"] == "one \"two\" 'spacey ''quoted'' argument' ''"
    assert "Args" not in spec.ad


def test_old_syntax_arguments_split_on_whitespace(workdir):
    [spec] = submit(workdir, 'executable = run.sh\narguments = -v  --out=x \\"q\\"\nqueue\n')
    assert spec.ad["Args"] == '-v --out=x "q"'  # condor_submit's old-syntax attribute
    assert "Arguments" not in spec.ad
    assert jobad.arguments(spec.ad) == ["-v", "--out=x", '"q"']


@pytest.mark.parametrize("argv", [["a"], ["a b", "", "it's"], ['say "hi"', "x"], []])
def test_formatted_arguments_parse_back_to_the_same_argv(argv):
    text = format_arguments(argv)
    assert parse_arguments('"' + text.replace('"', '""') + '"') == argv


@pytest.mark.parametrize(("text", "env"), [
    ("\"A=1 B='x y' C=\"", {"A": "1", "B": "x y", "C": ""}),
    ("A=1;B=x y;", {"A": "1", "B": "x y"}),
    ('"PATH=/bin:/usr/bin"', {"PATH": "/bin:/usr/bin"}),
])
def test_environment_both_syntaxes(text, env):
    assert parse_environment(text) == env


def test_environment_in_ad_as_new_syntax_string_sorted_by_name(workdir):
    [spec] = submit(workdir, "executable = run.sh\nenvironment = \"B='x y' A=1\"\nqueue\n")
    assert spec.ad["Environment"] == "A=1 B='x y'"
    assert "Env" not in spec.ad
    assert jobad.environment(spec.ad) == {"A": "1", "B": "x y"}


def test_old_environment_keyword_env_keeps_the_old_syntax_as_condor_submit_does(workdir):
    [spec] = submit(workdir, "executable = run.sh\nenv = B=2;A=1\nqueue\n")
    assert (spec.ad["Env"], spec.ad["EnvDelim"]) == ("A=1;B=2", ";")
    assert "Environment" not in spec.ad
    assert jobad.environment(spec.ad) == {"A": "1", "B": "2"}


# --- units -----------------------------------------------------------------------------------


@pytest.mark.parametrize(("text", "mib"), [
    ("100", 100), ("2GB", 2048), ("2G", 2048), ("2gb", 2048), ("512MB", 512), ("512M", 512),
    ("1024KB", 1), ("1000K", 1), ("1T", 1024 * 1024), ("1.5G", 1536), ("2 GB", 2048)])
def test_request_memory_units_give_mib(text, mib):
    assert parse_memory_mib(text) == mib


@pytest.mark.parametrize(("text", "kib"), [
    ("100", 100), ("1KB", 1), ("1M", 1024), ("2G", 2 * 1024 * 1024), ("1TB", 1024**3)])
def test_request_disk_units_give_kib(text, kib):
    assert parse_disk_kib(text) == kib


def test_resource_requests_land_in_the_ad(workdir):
    [spec] = submit(workdir, "executable = run.sh\nrequest_cpus = 8\nrequest_memory = 4G\n"
                             "request_disk = 20G\nqueue\n")
    assert (spec.ad["RequestCpus"], spec.ad["RequestMemory"], spec.ad["RequestDisk"]) == (
        8, 4096, 20 * 1024 * 1024)


# --- macros, custom attributes, requirements --------------------------------------------------


def test_custom_macros_defaults_late_binding_and_self_reference(workdir):
    [spec] = submit(workdir, "executable = run.sh\n"
                             "arguments = $(Base)/$(Name) $(Missing:fallback) $(Nothing)end\n"
                             "Base = /data\nName = $(Prefix)-$(Cluster)\nPrefix = run\n"
                             "Flags = -a\nFlags = $(Flags) -b\noutput = $(Flags)\nqueue\n")
    assert jobad.arguments(spec.ad) == ["/data/run-42", "fallback", "end"]
    assert spec.ad["Out"] == "-a -b"


def test_if_else_conditionals_pass_through_to_htcondor(workdir):
    specs = submit(workdir, "executable = run.sh\nif defined FAST\narguments = fast\nelse\n"
                            "arguments = slow\nendif\nqueue\nFAST = 1\n"
                            "if defined FAST\narguments = fast\nendif\nqueue\n")
    assert argvs(specs) == [["slow"], ["fast"]]


def test_plus_and_my_attributes_are_classad_expressions(workdir):
    *_, spec = submit(workdir, "executable = run.sh\n+Num = 3\nMY.Flag = true\n"
                             '+Label = "run-$(Process)"\n+Big = TARGET.Memory > 10 * Num\n'
                             "+RequestMemory = 4096\nqueue 2\n")
    assert [spec.ad["Num"], spec.ad["Flag"], spec.ad["Label"]] == [3, True, "run-1"]
    assert str(spec.ad.lookup("Big")) == "TARGET.Memory > 10 * Num"
    assert spec.ad["RequestMemory"] == 4096  # +Attr wins, as in condor_submit


def test_slot_macros_are_kept_verbatim_for_the_pilot(workdir):
    [spec] = submit(workdir, "executable = run.sh\narguments = -m $$(Memory) -c $$([Cpus*2])\n"
                             '+Where = "$$(Name:nowhere)"\n'
                             'environment = "SLOT=$$(Name)"\nqueue\n')
    assert jobad.arguments(spec.ad) == ["-m", "$$(Memory)", "-c", "$$([Cpus*2])"]
    assert spec.ad["Where"] == "$$(Name:nowhere)"
    assert jobad.environment(spec.ad) == {"SLOT": "$$(Name)"}


def test_desired_sites_string_is_kept(workdir):
    [spec] = submit(workdir, 'executable = run.sh\n+DESIRED_Sites = "aws_east,gcp"\nqueue\n')
    assert spec.ad["DESIRED_Sites"] == "aws_east,gcp"


def test_requirements_and_rank_combine_with_resource_clauses_and_match(workdir):
    [spec] = submit(workdir, 'executable = run.sh\nrequirements = TARGET.Arch == "X86_64"\n'
                             "rank = TARGET.Memory\nrequest_cpus = 2\nrequest_memory = 1G\n"
                             "request_disk = 1M\nqueue\n")
    assert str(spec.ad.lookup("Requirements")) == (
        f'(TARGET.Arch == "X86_64") && {REQUIREMENTS_TAIL}')
    assert str(spec.ad.lookup("Rank")) == "TARGET.Memory"
    slot = '[Cpus = {}; Memory = 2048; Disk = 2048; Arch = "{}"; Requirements = true]'
    assert spec.ad.symmetricMatch(classad2.ClassAd(slot.format(2, "X86_64")))
    assert not spec.ad.symmetricMatch(classad2.ClassAd(slot.format(1, "X86_64")))
    assert not spec.ad.symmetricMatch(classad2.ClassAd(slot.format(2, "aarch64")))


# --- files and directories -------------------------------------------------------------------


def test_initialdir_is_relative_to_submit_dir_and_anchors_the_job_files(workdir):
    run = workdir / "run1"
    run.mkdir()
    (run / "in.csv").write_text("x")
    [spec] = submit(workdir, "initialdir = run1\nexecutable = run.sh\ninput = in.csv\n"
                             "output = out.txt\nlog = job.log\n"
                             "transfer_input_files = in.csv, https://example.org/x.tar\n"
                             "transfer_output_files = out.txt,result.h5\nqueue\n")
    assert spec.ad["Iwd"] == str(run)
    assert spec.ad["Cmd"] == str(workdir / "run.sh")  # the executable is not under initialdir
    assert (spec.ad["In"], spec.ad["Out"]) == ("in.csv", "out.txt")
    assert spec.ad["UserLog"] == str(run / "job.log")  # inside the initialdir: it must be
    assert spec.ad["TransferInput"] == "in.csv,https://example.org/x.tar"
    assert spec.ad["TransferOutput"] == "out.txt,result.h5"
    assert jobad.string_list(spec.ad, "TransferInput") == ["in.csv", "https://example.org/x.tar"]


def test_priority_batch_name_and_description(workdir):
    [spec] = submit(workdir, "executable = run.sh\npriority = -5\nbatch_name = \"sweep\"\n"
                             "description = first pass\nqueue\n")
    assert (spec.ad["JobPrio"], spec.ad["JobBatchName"], spec.ad["JobDescription"]) == (
        -5, "sweep", "first pass")


def test_backslash_continues_a_line_and_errors_name_its_first_line(workdir):
    [spec] = submit(workdir, "executable = run.sh\narguments = a \\\n   b \\\n   c\nqueue\n")
    assert jobad.arguments(spec.ad) == ["a", "b", "c"]
    assert_error(workdir, "executable = run.sh\nrequest_cpus = \\\n  x\nqueue\n", 2,
                 "request_cpus")


# --- errors: each names the file and the line ------------------------------------------------


def test_junk_line_is_named(workdir):
    assert_error(workdir, "executable = run.sh\n# fine\nthis is junk\nqueue\n", 3,
                 "expected 'name = value'", "'this is junk'")


def test_bad_command_name_is_named(workdir):
    assert_error(workdir, "executable = run.sh\nrequest memory = 2G\nqueue\n", 2,
                 "'request memory' is not a valid command name")


def test_missing_executable_names_the_queue_line(workdir):
    assert_error(workdir, "arguments = x\n\nqueue\n", 3, "no executable (or shell) given")


def test_executable_not_found_names_its_line(workdir):
    assert_error(workdir, "arguments = x\nexecutable = nothere.sh\nqueue\n", 2,
                 "'nothere.sh' not found in " + str(workdir))


def test_no_queue_statement(workdir):
    assert_error(workdir, "executable = run.sh\n", None, "no queue statement")


@pytest.mark.parametrize(("queue", "fragment"), [
    ("queue abc", "queue count 'abc' is not a whole number"),
    ("queue -1", "queue count -1 is negative"),
    ("queue 3 4 5", "bad queue statement 'queue 3 4 5'"),
    ("queue a,b in (x y)", "takes one variable name"),
    ("queue a from rows.txt", "queue item file 'rows.txt' not found"),
    ("queue a from ls |", "not supported"),
    ("queue 2 a-b in (x)", "bad queue variable name 'a-b'"),
    ("queue 100001", "more than 100000 procs in one cluster"),
])
def test_bad_queue_statements_are_named(workdir, queue, fragment):
    assert_error(workdir, f"executable = run.sh\n{queue}\n", 2, fragment)


def test_unterminated_queue_item_list_names_the_queue_line(workdir):
    assert_error(workdir, "executable = run.sh\nqueue a from (\n  x\n  y\n", 2,
                 "never closed")


def test_queue_zero_everywhere_is_an_error(workdir):
    assert_error(workdir, "executable = run.sh\nqueue 0\n", 2, "queue no jobs")


def test_unterminated_macro_is_named(workdir):
    assert_error(workdir, "executable = run.sh\narguments = $(foo\nqueue\n", 2,
                 "unterminated macro '$(foo'")
    assert_error(workdir, "executable = run.sh\n+X = \"$$(Memory\"\nqueue\n", 2,
                 "unterminated macro")


@pytest.mark.timeout(20)
def test_macro_loop_is_an_error_not_a_hang(workdir):
    assert_error(workdir, "executable = run.sh\nA = $(B)\nB = x $(A)\narguments = $(A)\n"
                          "queue\n", 2, "loop: A -> B -> A")


@pytest.mark.parametrize("value", ["0", "two", "1.5", "-2"])
def test_request_cpus_must_be_a_positive_integer(workdir, value):
    assert_error(workdir, f"executable = run.sh\nrequest_cpus = {value}\nqueue\n", 2,
                 f"request_cpus: '{value}' is not a positive integer")


@pytest.mark.parametrize("value", ["2XB", "GB", "-1", "2B", "0"])
def test_request_memory_bad_unit_or_value(workdir, value):
    assert_error(workdir, f"executable = run.sh\n\nrequest_memory = {value}\nqueue\n", 3,
                 "request_memory:")


def test_request_memory_error_names_the_macro_value(workdir):
    assert_error(workdir, "executable = run.sh\nMEM = 2 XB\nrequest_memory = $(MEM)\nqueue\n",
                 3, "'2 XB' is not a size")


@pytest.mark.parametrize(("line", "fragment"), [
    ("+Foo = 1 +", "+Foo: '1 +' is not a valid ClassAd expression"),
    ("MY.Foo = foo bar", "MY.Foo: 'foo bar' is not a valid ClassAd expression"),
    ('+Foo = "open', "+Foo: '\"open' is not a valid ClassAd expression"),
    ("+Foo =", "+Foo: no value given"),
    ("+DESIRED_Sites = a,b", "+DESIRED_Sites: 'a,b' is not a valid ClassAd expression"),
    ("+DESIRED_Sites = 3", "DESIRED_Sites must be a quoted string"),
    ("requirements = Memory >", "requirements: 'Memory >' is not a valid ClassAd expression"),
    ("rank = )", "rank: ')' is not a valid"),
])
def test_bad_custom_attribute_or_expression_is_named(workdir, line, fragment):
    assert_error(workdir, f"executable = run.sh\n{line}\nqueue\n", 2, fragment)


def test_schedd_owned_attributes_cannot_be_overridden(workdir):
    assert_error(workdir, "executable = run.sh\n+ClusterId = 5\nqueue\n", 2,
                 "ClusterId is set by the schedd")


def test_missing_transfer_input_file_names_line_and_file(workdir):
    (workdir / "here.csv").write_text("x")
    assert_error(workdir, "executable = run.sh\ntransfer_input_files = here.csv, gone.csv\n"
                          "queue\n", 2, "'gone.csv' does not exist in " + str(workdir))


def test_missing_input_file_is_named(workdir):
    assert_error(workdir, "executable = run.sh\ninput = stdin.txt\nqueue\n", 2, "'stdin.txt'")


def test_missing_initialdir_is_named(workdir):
    assert_error(workdir, "executable = run.sh\ninitialdir = nope\nqueue\n", 2,
                 "initialdir: directory", "does not exist")


@pytest.mark.parametrize(("line", "fragment"), [
    ('arguments = "a b', "unbalanced double quote"),
    ("arguments = \"a 'b c\"", "unbalanced single quote"),
    ('arguments = a "b c"', "unbalanced double quote"),
    ('arguments = "a " b"', 'lone "'),
    ("environment = \"A='x\"", "unbalanced single quote"),
    ("environment = FOO", "'FOO' is not NAME=value"),
])
def test_unbalanced_quotes_in_arguments_and_environment(workdir, line, fragment):
    assert_error(workdir, f"executable = run.sh\n{line}\nqueue\n", 2, fragment)


def test_include_and_other_universes_are_refused(workdir):
    assert_error(workdir, "include : other.sub\nexecutable = run.sh\nqueue\n", 1, "include")
    assert_error(workdir, "executable = run.sh\nuniverse = java\nqueue\n", 2, "vanilla")


def test_error_in_a_late_proc_returns_nothing(workdir):
    (workdir / "a.csv").write_text("x")
    err = failure(workdir, "executable = run.sh\nqueue 2\n"
                           "transfer_input_files = $(Item)\nqueue in (a.csv b.csv)\n")
    assert err.line == 3 and "'b.csv' does not exist" in str(err)


def test_unreadable_file_is_a_submit_error(tmp_path):
    with pytest.raises(SubmitError, match="cannot read the submit file"):
        parse_submit_file(tmp_path / "absent.sub", cluster=1, owner="o")


def test_process_cwd_is_unchanged(workdir):
    before = os.getcwd()
    (workdir / "rows.txt").write_text("1\n")
    submit(workdir, "executable = run.sh\nqueue x from rows.txt\nqueue x matching *.sh\n")
    assert os.getcwd() == before


# --- $$() on the pilot -----------------------------------------------------------------------

SLOT = classad2.ClassAd('[Name = "slot1@vm-3"; Memory = 2048; Cpus = 4; HasGpu = false;'
                        ' Half = Memory / 2; Gone = undefined]')


@pytest.mark.parametrize(("text", "result"), [
    ("-m $$(Memory) on $$(Name)", "-m 2048 on slot1@vm-3"),
    ("$$(Half)", "1024"),
    ("$$(HasGpu)", "false"),
    ("$$(memory)", "2048"),
    ("$$(Site:local)-$$(Gone:none)", "local-none"),
    ("$$(Cpus:1)", "4"),
    ("$$([Cpus * 2])", "8"),
    ('$$([strcat(Name, "-x")])', "slot1@vm-3-x"),
    ("no macros $(Process)", "no macros $(Process)"),
])
def test_substitute_slot_macros(text, result):
    assert substitute_slot_macros(text, SLOT) == result


@pytest.mark.parametrize(("text", "fragment"), [
    ("$$(Site)", "no attribute Site"),
    ("$$(Gone)", "no attribute Gone"),
    ("$$([Nope + 1])", "Undefined"),
    ("$$([1 +])", "not a valid ClassAd expression"),
    ("$$(Memory", "unterminated"),
])
def test_substitute_slot_macros_refuses_what_the_slot_cannot_give(text, fragment):
    with pytest.raises(SlotMacroError, match=fragment.replace("(", r"\(")):
        substitute_slot_macros(text, SLOT)
