def test_create_and_wait(http):
    r = http.post("/v1/runs", json={"name": "smoke", "instructions": "x", "message": "hi"})
    assert r.status_code == 201, r.text
    run = http.get(f"/v1/runs/{r.json()['id']}/wait", params={"timeout": 10}).json()
    assert run["status"] == "completed"
    assert run["output"] == "You said: hi"
