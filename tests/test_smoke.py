from tests.conftest import Api


async def test_viewer_names_the_workspace_and_role(api: Api) -> None:
    data = await api("{ viewer { workspace { id name } role apiKeyName permissions } }")
    assert data["viewer"]["workspace"]["name"] == "Acme"
    assert data["viewer"]["role"] == "ADMIN"
