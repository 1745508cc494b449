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
        "'services']")


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
