"""Where a number came from: the commit is read from git, or, in a copy of the tree sent to another machine
(a lent GPU, whose .git may be older than the tree), from COMPCLIP_GIT_COMMIT with its cleanliness unknown."""

from compclip.provenance import git_commit
from tests.conftest import REPO


def test_commit_read_from_git(monkeypatch):
    monkeypatch.delenv("COMPCLIP_GIT_COMMIT", raising=False)
    got = git_commit(REPO)
    assert len(got["commit"]) == 40 and isinstance(got["dirty"], bool)


def test_the_senders_commit_wins_over_a_stale_git(monkeypatch):
    monkeypatch.setenv("COMPCLIP_GIT_COMMIT", "f" * 40)
    assert git_commit(REPO) == {"commit": "f" * 40, "dirty": None, "commit_from": "COMPCLIP_GIT_COMMIT"}


def test_commit_outside_a_repository_comes_from_the_sender(tmp_path, monkeypatch):
    monkeypatch.delenv("COMPCLIP_GIT_COMMIT", raising=False)
    assert git_commit(tmp_path) == {"commit": None, "dirty": None}
    monkeypatch.setenv("COMPCLIP_GIT_COMMIT", "abc123")
    assert git_commit(tmp_path) == {"commit": "abc123", "dirty": None, "commit_from": "COMPCLIP_GIT_COMMIT"}
