import pytest

from tests.kubeapi.server import FakeApiServer


@pytest.fixture
def api():
    with FakeApiServer(token="test-token") as server:
        yield server
