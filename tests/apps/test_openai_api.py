"""The OpenAI API of `attnkit serve`, as the official `openai` client speaks it to a real server: models, completions,
chat with and without streaming, embeddings (floats and base64), its errors as the client's exceptions, 16 concurrent
chat streams each with its own reply; and the answers' shapes, stop strings, n and usage on the app itself."""

import threading
from pathlib import Path

import numpy as np
import pytest
from fastapi.testclient import TestClient

import attnkit
from attnkit.apps.serve import create_app
from tests.ggufs import tiny_llama, write_gguf
from tests.servers import free_port, start_server

openai = pytest.importorskip("openai")
KEY = "sekret"
QUESTIONS = [f"Question {i}: what comes after {i}?" for i in range(16)]


@pytest.fixture(scope="module")
def chat_model(tmp_path_factory) -> Path:
    """A small random Llama with a byte-level tokenizer and ChatML's chat template, as a GGUF file in a folder."""
    folder = tmp_path_factory.mktemp("chat")
    write_gguf(folder / "tiny-chat.gguf", tiny_llama(vocab=320), "gpt2")
    return folder


@pytest.fixture(scope="module")
def server(chat_model):
    port = free_port()
    process = start_server(chat_model / "tiny-chat.gguf", port, "--api-key", KEY)
    yield openai.OpenAI(base_url=f"http://127.0.0.1:{port}/v1", api_key=KEY, max_retries=0)
    process.terminate()
    process.wait(30)


@pytest.fixture(scope="module")
def local(chat_model):
    return attnkit.load(chat_model, device="cpu")


def ask(text: str) -> list[dict]:
    return [{"role": "system", "content": "Answer briefly."}, {"role": "user", "content": text}]


def test_the_client_lists_the_model_and_completes_a_prompt(server, local):
    (model,) = server.models.list().data
    assert model.id == "tiny-chat" and model.owned_by == "attnkit"
    found = server.completions.create(model=model.id, prompt="The film was", max_tokens=6, temperature=0)
    assert found.choices[0].text == local.generate(["The film was"], max_new_tokens=6)[0]
    assert found.choices[0].finish_reason in ("length", "stop") and found.object == "text_completion"
    assert found.usage.prompt_tokens == len(local.tokenizer.encode("The film was"))
    assert 1 <= found.usage.completion_tokens <= 6


def test_the_client_chats_with_and_without_streaming(server, local):
    expected = local.chat([ask("Is it good?")], max_new_tokens=8)[0]
    answer = server.chat.completions.create(model="tiny-chat", messages=ask("Is it good?"), max_tokens=8, temperature=0)
    assert answer.choices[0].message.content == expected and answer.choices[0].message.role == "assistant"
    stream = server.chat.completions.create(
        model="tiny-chat", messages=ask("Is it good?"), max_tokens=8, temperature=0, stream=True,
        stream_options={"include_usage": True},
    )  # fmt: skip
    chunks = list(stream)
    assert chunks[0].choices[0].delta.role == "assistant" and chunks[0].object == "chat.completion.chunk"
    assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices) == expected
    assert [c.choices[0].finish_reason for c in chunks if c.choices][-1] in ("stop", "length")
    assert chunks[-1].choices == [] and chunks[-1].usage.total_tokens == answer.usage.total_tokens


def test_the_client_embeds_as_floats_and_as_base64(server, local):
    expected = np.array(local.embed(["a film", "a long day"], normalize=True))
    base64 = server.embeddings.create(model="tiny-chat", input=["a film", "a long day"])  # the client's default
    floats = server.embeddings.create(model="tiny-chat", input="a film", encoding_format="float")
    assert np.allclose([d.embedding for d in base64.data], expected, atol=1e-6)
    assert np.allclose(floats.data[0].embedding, expected[0], atol=1e-6) and len(floats.data) == 1


def test_a_wrong_key_and_a_bad_request_raise_the_clients_errors(server):
    base = str(server.base_url)
    with pytest.raises(openai.AuthenticationError, match="wants its API key"):
        openai.OpenAI(base_url=base, api_key="wrong", max_retries=0).models.list()
    with pytest.raises(openai.BadRequestError, match="temperature: Input should be less than or equal to 2"):
        server.chat.completions.create(model="tiny-chat", messages=ask("hi"), temperature=5)
    with pytest.raises(openai.BadRequestError, match="messages: List should have at least 1 item"):
        server.chat.completions.create(model="tiny-chat", messages=[])
    with pytest.raises(openai.BadRequestError, match="frequency_penalty is not supported"):
        server.completions.create(model="tiny-chat", prompt="a", frequency_penalty=1.0)


def test_sixteen_concurrent_chat_streams_each_get_their_own_reply(server, local):
    replies: dict[int, str] = {}

    def converse(i: int) -> None:
        stream = server.chat.completions.create(
            model="tiny-chat", messages=ask(QUESTIONS[i]), max_tokens=6, temperature=0, stream=True
        )
        replies[i] = "".join(c.choices[0].delta.content or "" for c in stream if c.choices)

    threads = [threading.Thread(target=converse, args=(i,)) for i in range(16)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(120)
    expected = local.chat([ask(q) for q in QUESTIONS], max_new_tokens=6)
    assert [replies.get(i) for i in range(16)] == expected
    assert len(set(expected)) > 1  # the replies differ, so that a reply sent to the wrong stream would show


def test_answers_take_openais_shapes(local):
    with TestClient(create_app(local, where="runs/tiny-chat")) as client:
        two = client.post(
            "/v1/completions", json={"prompt": ["a", "b"], "n": 2, "max_tokens": 3, "temperature": 1, "seed": 5}
        ).json()
        assert [c["index"] for c in two["choices"]] == [0, 1, 2, 3] and two["model"] == "tiny-chat"
        made = sum(len(local.tokenizer.encode(c["text"])) > 0 for c in two["choices"])
        assert (
            made >= 1
            and two["usage"]["total_tokens"] == two["usage"]["prompt_tokens"] + two["usage"]["completion_tokens"]
        )
        whole = local.generate(["The film"], max_new_tokens=12)[0]
        cut = client.post("/v1/completions", json={"prompt": "The film", "max_tokens": 12, "stop": whole[3:5]})
        assert cut.json()["choices"][0]["text"] == whole[: whole.index(whole[3:5])]
        assert cut.json()["choices"][0]["finish_reason"] == "stop"
        bad = client.post("/v1/chat/completions", json={"messages": [{"role": "user", "content": 5}]})
        assert bad.status_code == 400 and set(bad.json()["error"]) == {"message", "type", "param", "code"}
        assert bad.json()["error"]["type"] == "invalid_request_error"


def test_a_model_without_a_chat_template_lists_no_chat(tmp_path):
    write_gguf(tmp_path / "plain.gguf", tiny_llama(), "gpt2", **{"tokenizer.chat_template": None})
    with TestClient(create_app(attnkit.load(tmp_path / "plain.gguf", device="cpu"))) as client:
        assert "/v1/chat/completions" not in client.get("/openapi.json").json()["paths"]
        answer = client.post("/v1/chat/completions", json={"messages": [{"role": "user", "content": "hi"}]})
        assert (
            answer.status_code == 404 and "does not serve it; it serves /generate" in answer.json()["error"]["message"]
        )
        assert client.post("/v1/completions", json={"prompt": "hi", "max_tokens": 2}).status_code == 200
