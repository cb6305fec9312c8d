import pytest

from transform.secret_scrubbing import MASK, scrub_secrets


@pytest.mark.parametrize(
    ("column", "value", "masked"),
    [
        pytest.param("members_pass_hash", "abc", True, id="pass-hash"),
        pytest.param("members_pass_salt", "abc", True, id="pass-salt"),
        pytest.param("token", "f" * 64, True, id="token"),
        pytest.param("api_key", "k", True, id="api-key"),
        pytest.param("client_secret", "s", True, id="secret"),
        pytest.param("Password", "p", True, id="password-any-case"),
        pytest.param("note", "$2y$10$abcdefghijklmnopqrstuv", True, id="bcrypt-value-2y"),
        pytest.param("note", b"$2b$12$abc", True, id="bcrypt-bytes-2b"),
        pytest.param("note", "$2a$10$x", True, id="bcrypt-2a"),
        pytest.param("name", "Bob", False, id="plain"),
        pytest.param("bypass_count", 3, False, id="not-a-pass-column"),
        pytest.param("price", "$20.00", False, id="dollar-amount"),
        pytest.param("members_pass_hash", None, False, id="null-secret-stays-null"),
    ],
)
def test_scrub_secrets(column, value, masked):
    row = {"member_id": 1, column: value}
    scrubbed = scrub_secrets(row)
    assert scrubbed[column] == (MASK if masked else value)
    assert scrubbed["member_id"] == 1
    assert row[column] == value  # the input is not modified


def test_scrub_secrets_nested():
    assert scrub_secrets({"settings": {"token": "t", "gui": True}}) == {
        "settings": {"token": MASK, "gui": True}
    }
