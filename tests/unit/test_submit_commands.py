"""The one table of submit commands: it drives warnings and refusals, covers HTCondor's
commands, and the README's table is rendered from it."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from services.condor import commands
from services.condor.commands import QUIET, REFUSED, SUPPORTED, WARNED
from services.condor.submit import SubmitError
from tests.unit.test_condor_submit_htcondor import read, script

ROOT = Path(__file__).resolve().parents[2]

# condor_submit's own submit commands (HTCondor 23's submit_utils.h, names only): each must
# have a row, so none is silently taken for a macro.
HTCONDOR_COMMANDS = re.findall(r"\S+", """
    accounting_group accounting_group_user allowed_execute_duration allowed_job_duration
    append_files arguments batch_name checkpoint_exit_code compress_files concurrency_limits
    concurrency_limits_expr container_image copy_to_spool core_size cron_day_of_month
    cron_day_of_week cron_hour cron_minute cron_month cron_prep_time cron_window dagman_log
    deferral_prep_time deferral_time deferral_window description docker_image
    dont_encrypt_input_files dont_encrypt_output_files email_attributes encrypt_execute_directory
    encrypt_input_files encrypt_output_files environment error executable fetch_files getenv
    hold initialdir input job_ad_information_attrs job_lease_duration job_machine_attrs
    job_max_vacate_time keep_claim_idle kill_sig kill_sig_timeout leave_in_queue load_profile
    local_files log log_xml machine_count manifest max_idle max_job_retirement_time
    max_materialize max_retries max_transfer_input_mb max_transfer_output_mb nice_user
    noop_job notification notify_user on_exit_hold on_exit_hold_reason on_exit_hold_subcode
    on_exit_remove output output_destination periodic_hold periodic_hold_reason
    periodic_hold_subcode periodic_release periodic_remove periodic_vacate
    preserve_relative_paths priority rank remove_kill_sig hold_kill_sig request_cpus
    request_disk request_gpus request_memory requirements retry_until run_as_owner
    scitokens_file send_credential should_transfer_files shell skip_filechecks stack_size
    stream_error stream_input stream_output submit_event_notes success_exit_code
    transfer_checkpoint_files transfer_container transfer_executable transfer_input_files
    transfer_output_files transfer_output_remaps transfer_plugins universe use_oauth_services
    use_scitokens use_x509userproxy want_graceful_removal when_to_transfer_output
    x509userproxy ec2_ami_id grid_resource vm_memory
    """)


def test_every_htcondor_submit_command_has_a_row():
    missing = [name for name in HTCONDOR_COMMANDS if commands.lookup(name) is None]
    assert missing == []


def test_names_are_unique_and_lower_case():
    names = [name for command in commands.COMMANDS for name in (command.name, *command.aliases)]
    assert len(names) == len(set(names))
    assert all(name == name.lower() for name in names)


def test_the_readme_table_is_the_one_rendered_from_the_code():
    readme = (ROOT / "README.md").read_text()
    begin = readme.index(commands.README_BEGIN) + len(commands.README_BEGIN)
    shown = readme[begin:readme.index(commands.README_END)].strip()
    assert shown == commands.markdown_table(), (
        "README.md's table of submit commands is stale: replace it with the output of "
        "`python -m services.condor.commands`")


def _plain(disposition):
    return [command.name for command in commands.COMMANDS
            if command.disposition is disposition and not command.prefix]


@pytest.fixture
def job_dir(tmp_path):
    script(tmp_path / "run.sh")
    return tmp_path


@pytest.mark.parametrize("name", _plain(WARNED))
def test_every_warned_command_is_named_in_a_warning_on_its_line(job_dir, name):
    command = commands.lookup(name)
    value = {"": "1", "true": "false", "false": "true"}[command.default]
    sub = read(job_dir, f"executable = run.sh\n{name} = {value}\nqueue 2\n")
    assert [(w.line, str(w).split(": ")[1]) for w in sub.warnings
            if w.message.startswith(f"{name}:")] == [(2, name)]


@pytest.mark.parametrize("name", [c.name for c in commands.COMMANDS if c.default])
def test_a_command_written_with_its_default_value_changes_nothing_to_warn_about(job_dir, name):
    default = commands.lookup(name).default
    sub = read(job_dir, f"executable = run.sh\n{name} = {default.upper()}\nqueue\n")
    assert sub.warnings == [] and len(sub.jobs) == 1


@pytest.mark.parametrize("name", _plain(QUIET))
def test_every_quiet_command_is_accepted_without_a_word(job_dir, name):
    sub = read(job_dir, f"executable = run.sh\n{name} = 1\nqueue\n")
    assert sub.warnings == [] and len(sub.jobs) == 1


@pytest.mark.parametrize("name", _plain(REFUSED))
def test_every_refused_command_stops_the_file_on_its_line(job_dir, name):
    with pytest.raises(SubmitError) as caught:
        read(job_dir, f"executable = run.sh\n{name} = 1\nqueue\n")
    assert caught.value.line == 2 and name in str(caught.value)


def test_aliases_act_as_their_command(job_dir):
    sub = read(job_dir, "Executable = run.sh\nRequestMemory = 2048\nKillSig = SIGINT\n"
                        "WhenToTransferOutput = ON_EXIT\nqueue\n")
    assert sub.jobs[0].ad["RequestMemory"] == 2048
    assert [str(w).split(": ")[1] for w in sub.warnings] == ["KillSig"]


def test_supported_commands_set_the_attributes_the_table_names(job_dir):
    """The table's `attrs` column is what the README promises: spot-check it against ads."""
    (job_dir / "in.txt").write_text("x")
    sub = read(job_dir, """
        executable = run.sh
        arguments = "a b"
        environment = "X=1"
        input = in.txt
        output = out.txt
        error = err.txt
        log = job.log
        transfer_input_files = in.txt
        transfer_output_files = out.txt
        request_gpus = 1
        hold = true
        batch_name = b
        description = d
        priority = 3
        queue
        """)
    ad = sub.jobs[0].ad
    for command in commands.COMMANDS:
        if command.disposition is SUPPORTED and command.name in {
                "executable", "arguments", "environment", "input", "output", "error", "log",
                "transfer_input_files", "transfer_output_files", "request_gpus", "hold",
                "batch_name", "description", "priority", "requirements", "rank",
                "request_cpus", "request_memory", "request_disk", "universe"}:
            assert any(attr in ad for attr in command.attrs), command.name
