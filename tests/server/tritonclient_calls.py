"""Calls a modelplex server with tritonclient (NVIDIA's gRPC client), in a process of its own.

tritonclient registers Triton's ``grpc_service.proto`` (package ``inference``) in protobuf's
default descriptor pool, and so does modelplex's generated OIP module: the two cannot share
a process. So tests/server/test_oip_tritonclient.py runs this script with the server's
address and a JSON plan, and compares the JSON it prints with the typed API's answers.

    python tritonclient_calls.py PLAN.json  ->  one JSON object on stdout
"""

from __future__ import annotations

import base64
import json
import queue
import sys

import numpy as np
import tritonclient.grpc as triton
from google.protobuf import descriptor_pb2, json_format
from tritonclient.grpc import service_pb2
from tritonclient.utils import InferenceServerException


def descriptors(names: list[str]) -> dict[str, object]:
    """Triton's definitions of the named messages and the service's methods, as dicts."""
    fd = descriptor_pb2.FileDescriptorProto()
    service_pb2.DESCRIPTOR.CopyToProto(fd)
    messages = {m.name: json_format.MessageToDict(m) for m in fd.message_type if m.name in names}
    [service] = fd.service
    methods = {m.name: json_format.MessageToDict(m) for m in service.method}
    return {"service": f"{fd.package}.{service.name}", "messages": messages, "methods": methods}


def error(e: InferenceServerException) -> dict[str, str]:
    return {"status": str(e.status()), "message": e.message()}


def classify(client: triton.InferenceServerClient, plan: dict) -> dict[str, object]:
    images = np.array([base64.b64decode(b) for b in plan["images"]], dtype=object)
    encoded = triton.InferInput("images", [len(images)], "BYTES")
    encoded.set_data_from_numpy(images)
    result = client.infer(plan["classifier"], [encoded], request_id="c1", parameters={"top_k": plan["top_k"]})
    pixels = np.array(plan["pixels"], dtype=np.float32)
    tensor = triton.InferInput("pixel_values", list(pixels.shape), "FP32")
    tensor.set_data_from_numpy(pixels)
    wanted = [triton.InferRequestedOutput("indices"), triton.InferRequestedOutput("scores")]
    from_pixels = client.infer(plan["classifier"], [tensor], outputs=wanted, parameters={"top_k": plan["top_k"]})
    return {
        "id": result.get_response().id,
        "scores": result.as_numpy("scores").tolist(),
        "indices": result.as_numpy("indices").tolist(),
        "labels": [[b.decode() for b in row] for row in result.as_numpy("labels")],
        "pixels": {
            "outputs": [o.name for o in from_pixels.get_response().outputs],
            "scores": from_pixels.as_numpy("scores").tolist(),
            "indices": from_pixels.as_numpy("indices").tolist(),
        },
    }


def stream(client: triton.InferenceServerClient, plan: dict) -> dict[str, object]:
    """Every prompt on one stream at once; each request's responses in arrival order."""
    answers: queue.Queue = queue.Queue()
    client.start_stream(callback=lambda result, error: answers.put((result, error)))
    for i, prompt in enumerate(plan["prompts"]):
        text = triton.InferInput("text_input", [1], "BYTES")
        text.set_data_from_numpy(np.array([prompt.encode()], dtype=object))
        client.async_stream_infer(
            plan["generator"], [text], request_id=f"p{i}", parameters={"max_new_tokens": plan["max_new_tokens"]}
        )
    bad = triton.InferInput("text_input", [1], "BYTES")
    bad.set_data_from_numpy(np.array([b"x"], dtype=object))
    client.async_stream_infer(plan["generator"], [bad], request_id="bad", parameters={"max_new_tokens": 10**9})
    per_request: dict[str, list[dict]] = {}
    errors = []
    open_requests = len(plan["prompts"]) + 1
    while open_requests:
        result, err = answers.get(timeout=120)
        if err is not None:
            errors.append(error(err))
            open_requests -= 1
            continue
        response = result.get_response()
        final = response.parameters["triton_final_response"].bool_param
        item = {
            "text": result.as_numpy("text_output")[0].decode(),
            "token_ids": result.as_numpy("token_ids").tolist(),
            "final": final,
        }
        if final:
            item["finish_reason"] = result.as_numpy("finish_reason")[0].decode()
            item["completion_tokens"] = int(result.as_numpy("completion_tokens")[0])
            open_requests -= 1
        per_request.setdefault(response.id, []).append(item)
    client.stop_stream()
    return {"responses": per_request, "errors": errors}


def complete(client: triton.InferenceServerClient, plan: dict) -> dict[str, object]:
    """ModelInfer (unary) on the generator: the whole text at once."""
    text = triton.InferInput("text_input", [1], "BYTES")
    text.set_data_from_numpy(np.array([plan["prompts"][0].encode()], dtype=object))
    parameters = {"max_new_tokens": plan["max_new_tokens"], "temperature": 0.9, "seed": 7, "stop": '["zz", "qq"]'}
    result = client.infer(plan["generator"], [text], parameters=parameters)
    return {
        "text": result.as_numpy("text_output")[0].decode(),
        "token_ids": result.as_numpy("token_ids").tolist(),
        "finish_reason": result.as_numpy("finish_reason")[0].decode(),
    }


def repository(client: triton.InferenceServerClient, plan: dict) -> dict[str, object]:
    name, config = plan["load"]["name"], json.dumps(plan["load"]["config"])
    client.load_model(name, config=config)
    loaded = client.is_model_ready(name)
    index = client.get_model_repository_index(as_json=True)
    client.unload_model(name)
    try:
        client.load_model("second", config=json.dumps({"spec": "no-such-spec"}))
        refused = None
    except InferenceServerException as e:
        refused = error(e)
    return {
        "ready_after_load": loaded,
        "index": index,
        "ready_after_unload": client.is_model_ready(name),
        "refused": refused,
    }


def main() -> None:
    with open(sys.argv[1]) as f:
        plan = json.load(f)
    client = triton.InferenceServerClient(plan["address"])
    out: dict[str, object] = {
        "descriptors": descriptors(plan["messages"]),
        "live": client.is_server_live(),
        "ready": client.is_server_ready(),
        "model_ready": {m: client.is_model_ready(m) for m in [plan["classifier"], plan["generator"], "nope"]},
        "server_metadata": client.get_server_metadata(as_json=True),
        "metadata": {m: client.get_model_metadata(m, as_json=True) for m in [plan["classifier"], plan["generator"]]},
    }
    try:
        client.get_model_metadata("nope")
    except InferenceServerException as e:
        out["unknown_model"] = error(e)
    out["classify"] = classify(client, plan)
    out["stream"] = stream(client, plan)
    out["complete"] = complete(client, plan)
    out["repository"] = repository(client, plan)
    client.close()
    print(json.dumps(out))


if __name__ == "__main__":
    main()
