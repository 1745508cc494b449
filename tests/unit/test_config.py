"""The pool configuration a user writes: what loads, and the one line a mistake earns."""

from __future__ import annotations

import pytest

from services.runtime.config import ConfigError, GroupConfig, load_pool_config

ENTRY = '[[entry]]\nname = "a"\nsite = "SiteA"\n'


def load(tmp_path, text: str):
    path = tmp_path / "burst.toml"
    path.write_text(text)
    return load_pool_config(path)


def error(tmp_path, text: str) -> str:
    with pytest.raises(ConfigError) as err:
        load(tmp_path, text)
    return str(err.value)


def test_a_minimal_file_takes_the_defaults(tmp_path):
    pool = load(tmp_path, ENTRY + "idle_timeout_s = 30\n[entry.limits]\nmax_pilots = 3\n")
    (entry,) = pool.entries
    assert (entry.name, entry.site, entry.driver, entry.cpus) == ("a", "SiteA", "local", 1)
    assert entry.idle_timeout_s == 30.0 and isinstance(entry.idle_timeout_s, float)
    assert entry.limits.max_pilots == 3 and entry.limits.max_launch_per_cycle == 5
    assert pool.groups == (GroupConfig(name="main"),)
    assert pool.services.schedd_name == "schedd"


def test_a_wrong_type_names_file_table_index_and_key(tmp_path):
    text = ENTRY + ENTRY.replace('"a"', '"b"') + ENTRY.replace('"a"', '"c"') + 'cpus = "4"\n'
    assert error(tmp_path, text) == f"{tmp_path}/burst.toml: entry[2].cpus: expected int, got str"


def test_a_boolean_is_not_a_number(tmp_path):
    assert error(tmp_path, ENTRY + "memory_mb = true\n").endswith(
        "burst.toml: entry[0].memory_mb: expected int, got bool")


def test_an_unknown_field_lists_the_known_ones(tmp_path):
    message = error(tmp_path, ENTRY + "cpu = 2\n")
    assert message.startswith(f"{tmp_path}/burst.toml: entry[0]: unknown field(s) ['cpu']; known:")
    assert "'cpus'" in message and "'memory_mb'" in message


def test_an_unknown_field_in_a_nested_limits_table(tmp_path):
    message = error(tmp_path, ENTRY + "[[group]]\nname = 'g'\n[group.limits]\nmax_idle = 5\n")
    assert message.startswith(
        f"{tmp_path}/burst.toml: group[0].limits: unknown field(s) ['max_idle']; known:")
    assert "'max_idle_per_entry'" in message


def test_an_unknown_table(tmp_path):
    assert error(tmp_path, ENTRY + "[servces]\n") == (
        f"{tmp_path}/burst.toml: unknown field(s) ['servces']; "
        "known: ['accounting_group', 'concurrency_limits', 'entry', 'group', 'negotiator', "
        "'services', 'storage']")


def test_a_missing_required_field(tmp_path):
    assert error(tmp_path, ENTRY + '[[entry]]\nname = "b"\n') == (
        f"{tmp_path}/burst.toml: entry[1]: missing required field 'site'")


def test_negative_numbers_are_refused(tmp_path):
    assert error(tmp_path, ENTRY + "idle_timeout_s = -1\n") == (
        f"{tmp_path}/burst.toml: entry[0].idle_timeout_s: expected float >= 0.0, got -1")


@pytest.mark.parametrize("key", ["cpus", "memory_mb", "disk_mb"])
def test_an_empty_slot_is_refused(tmp_path, key):
    assert error(tmp_path, ENTRY + f"{key} = 0\n") == (
        f"{tmp_path}/burst.toml: entry[0].{key}: expected int >= 1, got 0")


def test_a_bad_value_in_a_nested_limits_table(tmp_path):
    text = ENTRY + "[[group]]\nname = 'g'\n[group.limits]\nmax_idle_per_entry = -5\n"
    assert error(tmp_path, text) == (
        f"{tmp_path}/burst.toml: group[0].limits.max_idle_per_entry: expected int >= 0, got -5")
    text = ENTRY + "[entry.limits]\npending_timeout_s = 'soon'\n"
    assert error(tmp_path, text) == (
        f"{tmp_path}/burst.toml: entry[0].limits.pending_timeout_s: expected float, got str")


def test_tables_written_in_the_wrong_shape(tmp_path):
    assert error(tmp_path, '[entry]\nname = "a"\nsite = "s"\n') == (
        f"{tmp_path}/burst.toml: entry: expected array of tables, got table")
    assert error(tmp_path, ENTRY + "limits = 3\n") == (
        f"{tmp_path}/burst.toml: entry[0].limits: expected table, got int")


def test_services_timers_are_checked(tmp_path):
    assert error(tmp_path, '[services]\nfrontend_interval_s = "1m"\n' + ENTRY) == (
        f"{tmp_path}/burst.toml: services.frontend_interval_s: expected float, got str")


def test_domain_checks_after_the_types(tmp_path):
    assert error(tmp_path, ENTRY + 'driver = "slurm"\n') == (
        f"{tmp_path}/burst.toml: entry[0].driver: 'slurm' is not one of local, ec2, sim")
    assert error(tmp_path, ENTRY + ENTRY) == (
        f"{tmp_path}/burst.toml: entry names: 'a' appears twice")
    assert error(tmp_path, "[services]\n") == (
        f"{tmp_path}/burst.toml: no [[entry]] configured; the pool could never grow")


def test_a_file_that_is_no_toml_or_is_missing(tmp_path):
    assert error(tmp_path, "entry = [").startswith(f"{tmp_path}/burst.toml: not valid TOML:")
    with pytest.raises(ConfigError, match="no such configuration file"):
        load_pool_config(tmp_path / "absent.toml")


def test_a_group_credential_must_be_a_reference_and_the_value_is_never_echoed(tmp_path):
    good = load(tmp_path, ENTRY + '[[group]]\nname = "g"\ncredentials = { aws = "env:AWS_CREDS",'
                ' os = "file:creds/os.keys", local = "none" }\n')
    assert good.groups[0].credentials["os"] == "file:creds/os.keys"
    for secret in ("AKIAIOSFODNN7EXAMPLE:wJalrXUtnFEMI", "env:", "env:1BAD", "file:", "x"):
        said = error(tmp_path, ENTRY + f'[[group]]\nname = "g"\ncredentials = {{ aws = '
                               f'"{secret}" }}\n')
        assert said == (f"{tmp_path}/burst.toml: group[0].credentials.aws: not a credential "
                        "reference; write env:VARIABLE, file:/path/to/secret or none, never "
                        "the secret itself")


def test_an_entry_credential_kind_is_one_of_the_known(tmp_path):
    assert load(tmp_path, ENTRY + 'credential = "ec2-keypair"\n').entries[0].credential == \
        "ec2-keypair"
    assert error(tmp_path, ENTRY + 'credential = "password"\n').endswith(
        "entry[0].credential: 'password' is not one of none, ec2-keypair, token, proxy")


def test_an_entry_declares_the_custom_resources_its_pilots_carry(tmp_path):
    (entry,) = load(tmp_path, ENTRY + "gpus = 1\nresources = { Boats = 2, ssd_slots = 4 }\n"
                    ).entries
    assert entry.custom_resources() == {"GPUs": 1, "Boats": 2, "ssd_slots": 4}
    (plain,) = load(tmp_path, ENTRY).entries
    assert plain.custom_resources() == {}


@pytest.mark.parametrize(("text", "message"), [
    ("resources = { Boats = -1 }", "entry[0].resources.Boats: expected int >= 0, got -1"),
    ('resources = { Boats = "two" }', "entry[0].resources.Boats: expected int >= 0, got str"),
    ("resources = { X = 1 }", "entry[0].resources.X: a resource name is a letter then"),
    ("resources = { Memory = 1 }", "entry[0].resources.Memory: Memory is a built-in resource"),
    ("resources = { gpus = 1 }", "entry[0].resources.gpus: declare GPUs with gpus = N"),
    ("gpus = -1", "entry[0].gpus: expected int >= 0, got -1"),
])
def test_a_bad_resource_names_its_key(tmp_path, text, message):
    assert error(tmp_path, ENTRY + text + "\n").startswith(f"{tmp_path}/burst.toml: {message}")


GROUPS = ENTRY + """
[negotiator]
accept_surplus = true
concurrency_limit_default = 4

[[accounting_group]]
name = "physics"
quota_fraction = 0.75

[[accounting_group]]
name = "bio"
quota = 8
accept_surplus = false

[concurrency_limits]
license_a = 10
"matlab.west" = 2
"""


def test_accounting_groups_and_concurrency_limits(tmp_path):
    from services.negotiator.groups import FairSharePolicy, GroupQuota

    pool = load(tmp_path, GROUPS)
    policy = FairSharePolicy.from_pool(pool)
    assert policy.groups == (GroupQuota("physics", 0.75, dynamic=True, accept_surplus=True),
                             GroupQuota("bio", 8.0, dynamic=False, accept_surplus=False))
    assert policy.limit("license_a") == 10 and policy.limit("matlab.west") == 2
    assert policy.limit("unnamed") == 4
    assert policy.quotas(40) == {"bio": 8.0, "physics": 24.0, "<none>": 8.0}


@pytest.mark.parametrize(("text", "message"), [
    ('[[accounting_group]]\nname = "physics"\n',
     "accounting_group[0]: set one of quota (cpus) and quota_fraction (of the pool)"),
    ('[[accounting_group]]\nname = "physics"\nquota = 2\nquota_fraction = 0.5\n',
     "accounting_group[0]: set one of quota (cpus) and quota_fraction (of the pool)"),
    ('[[accounting_group]]\nname = "physics"\nquota_fraction = 1.5\n',
     "accounting_group[0].quota_fraction: expected float <= 1.0, got 1.5"),
    ('[[accounting_group]]\nname = "physics"\nquota = "lots"\n',
     "accounting_group[0].quota: expected float, got str"),
    ('[[accounting_group]]\nname = "physics.cms"\nquota = 2\n',
     "accounting_group[0].name: 'physics.cms': letters, digits, '_' and '-' only (groups are "
     "one level: no '.')"),
    ('[[accounting_group]]\nname = "a"\nquota = 1\n[[accounting_group]]\nname = "a"\nquota = 2\n',
     "accounting_group names: 'a' appears twice"),
    ("[concurrency_limits]\nlicense_a = \"ten\"\n",
     "concurrency_limits.license_a: expected a number >= 0, got 'ten'"),
    ("[concurrency_limits]\nmatlab.west = 2\n",
     "concurrency_limits.matlab: expected a number, got a table (quote a name with a dot: "
     '"matlab.x" = 2)'),
    ("[negotiator]\naccept_surplus = 1\n", "negotiator.accept_surplus: expected bool, got int"),
])
def test_mistakes_in_the_negotiator_tables(tmp_path, text, message):
    assert error(tmp_path, ENTRY + text) == f"{tmp_path}/burst.toml: {message}"


def test_object_storage_is_off_unless_configured_and_takes_a_reference(tmp_path):
    assert not load(tmp_path, ENTRY).storage.enabled
    storage = load(tmp_path, ENTRY + '[storage]\nendpoint = "embedded"\n'
                                     'credentials = "env:S3_KEYS"\nurl_expiry_s = 600\n').storage
    assert (storage.enabled, storage.bucket, storage.url_expiry_s, storage.inline_max_bytes) == (
        True, "burst-transfer", 600.0, 4 * 1024 * 1024)


@pytest.mark.parametrize("table, message", [
    ('endpoint = "s3.example.org"', 'storage.endpoint: \'s3.example.org\' is not "embedded"'),
    ('endpoint = "aws"\nbucket = "My_Bucket"', "storage.bucket: 'My_Bucket' is not an S3 bucket"),
    ('endpoint = "aws"\ncredentials = "AKIA:secret"', "storage.credentials: not a credential "
                                                     "reference"),
    ('endpoint = "aws"\nurl_expiry_s = 0', "storage.url_expiry_s: expected float > 0"),
    ('endpoint = "aws"\ninline_max_bytes = 0', "storage.inline_max_bytes: expected int >= 1"),
])
def test_a_bad_storage_table_is_refused_naming_the_key(tmp_path, table, message):
    text = error(tmp_path, ENTRY + f"[storage]\n{table}\n")
    assert message in text and "secret" not in text.replace("never the secret", ""), text
