"""The ``modelplex`` command: ``serve`` runs a server (needs the server package);
the other commands talk to a running server."""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from google.protobuf import json_format

from modelplex_client._image_generation_calls import add_imagine_parser, cli_imagine
from modelplex_client._requests import ServerError
from modelplex_client._speech_recognition_calls import add_transcribe_parser, cli_transcribe
from modelplex_client._speech_synthesis_calls import add_speak_parser, cli_speak
from modelplex_client.client import Client
from modelplex_client.pb import models_pb2, text_generation_pb2

__all__ = ["main"]


def _json(message: Any) -> str:
    return json.dumps(json_format.MessageToDict(message, preserving_proto_field_name=True))


def _cmd_models(client: Client, args: argparse.Namespace) -> None:
    models = client.list_models()
    if args.json:
        for m in models:
            print(_json(m))
        return
    if not models:
        print("no models loaded")
    for m in models:
        weights = _enum_name(models_pb2.WeightsSource, m.weights.source, "WEIGHTS_SOURCE_")
        devices = ", ".join(i.device for i in m.instances)
        state = _enum_name(models_pb2.ModelState, m.state, "MODEL_STATE_")
        print(f"{m.name:24} {m.task:22} {state:8} {m.spec}/{m.variant}  weights={weights}  devices=[{devices}]")
        if m.HasField("task_info"):
            print(f"    {_task_info(m.task_info)}")


def _enum_name(enum: Any, value: int, prefix: str) -> str:
    return enum.Name(value).removeprefix(prefix).lower()


def _task_info(info: Any) -> str:
    """A task's ModelInfo.task_info as ``key=value`` pairs; a third-party task's message that this
    client has no stubs for shows as its type name."""
    try:
        fields = json_format.MessageToDict(info, preserving_proto_field_name=True)
    except (TypeError, KeyError):
        return f"({info.TypeName()})"
    fields.pop("@type", None)
    return "  ".join(f"{k}={json.dumps(v)}" for k, v in fields.items()) or f"({info.TypeName()})"


def _cmd_plugins(client: Client, args: argparse.Namespace) -> None:
    plugins = client.list_plugins()
    if args.json:
        for p in plugins:
            print(_json(p))
        return
    for p in plugins:
        state = _enum_name(models_pb2.PluginState, p.state, "PLUGIN_STATE_")
        dist = f"{p.distribution} {p.version}".strip()
        print(f"{p.name:16} {state:8} {dist}")
        if p.error:
            print(f"    error: {p.error}")
        if p.tasks:
            print("    tasks: " + ", ".join(f"{t.id} ({', '.join(t.services)})" for t in p.tasks))
        if p.specs:
            print("    specs: " + ", ".join(s.name for s in p.specs))


def _cmd_classify(client: Client, args: argparse.Namespace) -> None:
    results = client.classify([Path(p) for p in args.images], model=args.model, top_k=args.top_k)
    for path, classes in zip(args.images, results, strict=True):
        if args.json:
            print(
                json.dumps(
                    {
                        "image": path,
                        "classes": [{"index": c.index, "label": c.label, "score": c.score} for c in classes],
                    }
                )
            )
            continue
        print(path)
        for c in classes:
            print(f"  {c.score:7.2%}  {c.label} ({c.index})")


def _cmd_generate(client: Client, args: argparse.Namespace) -> None:
    chunks = client.generate(
        args.prompt,
        model=args.model,
        max_new_tokens=args.max_new_tokens,
        temperature=args.temperature,
        top_k=args.top_k,
        top_p=args.top_p,
        repetition_penalty=args.repetition_penalty,
        seed=args.seed,
        stop=args.stop or (),
        logprobs=args.logprobs,
    )
    last = None
    for chunk in chunks:
        if args.json:
            print(_json(chunk), flush=True)
        else:
            print(chunk.text, end="", flush=True)
        last = chunk
    if not args.json:
        print()
        if last is not None:
            reason = _enum_name(text_generation_pb2.FinishReason, last.finish_reason, "FINISH_REASON_")
            print(
                f"[{reason}: {last.usage.completion_tokens} tokens, first after {last.time_to_first_token_ms:.0f} ms]",
                file=sys.stderr,
            )


def _cmd_chat(client: Client, args: argparse.Namespace) -> None:
    """A terminal chat: each line read is the user's next message; the model's reply streams back
    and joins the conversation. An empty line, ``/exit`` or end of input ends it."""
    messages: list[dict[str, str]] = [{"role": "system", "content": args.system}] if args.system else []
    interactive = sys.stdin.isatty()
    while True:
        if interactive:
            print("> ", end="", flush=True)
        line = sys.stdin.readline()
        if not line or line.strip() in ("", "/exit"):
            return
        messages.append({"role": "user", "content": line.rstrip("\n")})
        reply = []
        options = dict(
            max_new_tokens=args.max_new_tokens, temperature=args.temperature, top_p=args.top_p, seed=args.seed
        )
        for chunk in client.chat(messages, model=args.model, **options):
            print(_json(chunk) if args.json else chunk.text, end="\n" if args.json else "", flush=True)
            reply.append(chunk.text)
        if not args.json:
            print(flush=True)
        messages.append({"role": "assistant", "content": "".join(reply)})


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="modelplex", description="Serve and call models over gRPC.")
    sub = p.add_subparsers(dest="command", required=True)
    sub.add_parser("serve", help="run a server (see `modelplex serve --help`)", add_help=False)

    def client_command(name: str, help: str) -> argparse.ArgumentParser:
        c = sub.add_parser(name, help=help)
        c.add_argument(
            "--server",
            default="127.0.0.1:50051",
            help="host:port, a comma-separated list of replicas (round robin), or dns:///name:port",
        )
        c.add_argument(
            "--timeout",
            type=float,
            default=None if name in ("generate", "chat") else 30.0,
            help="seconds per call (default: 30; none for generate and chat, whose streams may run long)",
        )
        c.add_argument("--json", action="store_true", help="one JSON object per line")
        return c

    client_command("models", "list the loaded models")
    client_command("plugins", "list the discovered plugins and their specs")
    c = client_command("classify", "classify image files")
    c.add_argument("images", nargs="+", help="JPEG, PNG, WebP or BMP files")
    c.add_argument("--model", required=True)
    c.add_argument("--top-k", type=int, default=0, help="classes per image (default: 5, or all if fewer)")
    g = client_command("generate", "generate text, printing the tokens as they arrive")
    g.add_argument("prompt", help="the prompt (T5: with its task prefix, e.g. 'summarize: ...')")
    g.add_argument("--model", required=True)
    g.add_argument("--max-new-tokens", type=int, default=64)
    g.add_argument("--temperature", type=float, default=0.0, help="0 (the default) is greedy")
    g.add_argument("--top-k", type=int, default=0, help="0 is off")
    g.add_argument("--top-p", type=float, default=None, help="in (0, 1]; default off")
    g.add_argument("--repetition-penalty", type=float, default=None)
    g.add_argument("--seed", type=int, default=None, help="the same seed gives the same output")
    g.add_argument("--stop", action="append", help="a stop sequence (repeat for more)")
    g.add_argument("--logprobs", type=int, default=None, help="return logprobs with N alternatives")
    c = client_command("chat", "chat with a model in the terminal, its replies streamed (one line per message)")
    c.add_argument("--model", required=True)
    c.add_argument("--system", default="", help="a system message to start the conversation with")
    c.add_argument("--max-new-tokens", type=int, default=0, help="0 (the default): up to the model's limit")
    c.add_argument("--temperature", type=float, default=0.0, help="0 (the default) is greedy")
    c.add_argument("--top-p", type=float, default=None, help="in (0, 1]; default off")
    c.add_argument("--seed", type=int, default=None)
    # Each task brings its own command (its own --server, --timeout and --json).
    add_transcribe_parser(sub)
    add_speak_parser(sub)
    add_imagine_parser(sub)
    return p


_COMMANDS = {
    "models": _cmd_models,
    "plugins": _cmd_plugins,
    "classify": _cmd_classify,
    "generate": _cmd_generate,
    "chat": _cmd_chat,
    "transcribe": cli_transcribe,
    "speak": cli_speak,
    "imagine": cli_imagine,
}


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ["serve"]:
        try:
            from modelplex.server.cli import main as serve
        except ImportError:
            print("modelplex: `serve` needs the server: pip install modelplex", file=sys.stderr)
            return 2
        return serve(argv[1:])
    args = parser().parse_args(argv)
    try:
        with Client(args.server, timeout=args.timeout) as client:
            _COMMANDS[args.command](client, args)
    except ServerError as e:
        print(f"modelplex: {e.code.name}: {e.details}", file=sys.stderr)
        return 1
    except OSError as e:
        print(f"modelplex: {e}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
