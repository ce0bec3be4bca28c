import os

import pytest

from tests.e2e.agentlab import AgentLab, article_policy, lab_pods
from tests.lab.netlab import Lab


@pytest.fixture
def agent_lab(tmp_path):
    if os.geteuid() != 0:
        pytest.skip("network namespaces need root")
    with Lab() as lab:
        env = AgentLab(lab, tmp_path)
        env.write_policy([article_policy(), *lab_pods()])
        with env.internet:
            yield env
