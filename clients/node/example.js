#!/usr/bin/env node
// A modelplex client in plain Node.js: @grpc/grpc-js for the transport and
// @grpc/proto-loader to load the .proto files at run time (no code generation).
//
//   node example.js <host:port> <classifier-model> <text-model> <image-file>
//
// It lists the models, classifies the image, streams a text generation and
// shows how a rejected LoadModel surfaces. The output is one JSON object per
// line (see README.md), so that scripts and tests can read it.
'use strict';

const fs = require('fs');
const path = require('path');
const grpc = require('@grpc/grpc-js');
const protoLoader = require('@grpc/proto-loader');

// The repository's protos/ folder; MODELPLEX_PROTOS points elsewhere when this
// file is copied out of the repository.
const PROTOS_ROOT = process.env.MODELPLEX_PROTOS || path.resolve(__dirname, '..', '..', 'protos');
const PROTO_FILES = [
  'modelplex/v1/common.proto',
  'modelplex/v1/models.proto',
  'modelplex/v1/image_classification.proto',
  'modelplex/v1/text_generation.proto',
];
// Deadline of each call. Generous: the first call on a model may wait for a
// CPU forward pass, and a deadline only bounds a hung server.
const TIMEOUT_MS = Number(process.env.MODELPLEX_TIMEOUT_MS || 60000);

// The google/protobuf/*.proto files that ship with protobufjs (proto-loader's
// own protobuf runtime). any.proto and struct.proto, which models.proto
// imports, are compiled into protobufjs and found without a file; the folder
// is on the include path for the other well-known types. It is resolved from
// proto-loader's location because protobufjs is its dependency, not ours.
function protobufjsIncludeDir() {
  const loaderDir = path.dirname(require.resolve('@grpc/proto-loader'));
  return path.dirname(require.resolve('protobufjs/package.json', { paths: [loaderDir] }));
}

function loadProtos() {
  const definition = protoLoader.loadSync(PROTO_FILES, {
    includeDirs: [PROTOS_ROOT, protobufjsIncludeDir()],
    keepCase: true, // snake_case field names, as in the .proto files
    longs: String, // int64/uint64 as decimal strings: a JS number loses precision past 2^53
    enums: String, // enum values by name, e.g. "MODEL_STATE_READY"
    defaults: true, // unset scalar fields come back as their defaults ("" / 0 / false)
    oneofs: true, // adds a virtual field naming the set member of each oneof
    // Decodes google.protobuf.Any fields whose type is loaded (ModelInfo.task_info)
    // into {"@type": "type.googleapis.com/modelplex.v1....", ...fields} instead
    // of {type_url, value: <Buffer>}. See README.md.
    json: true,
  });
  return grpc.loadPackageDefinition(definition).modelplex.v1;
}

// One line of machine-readable output.
function emit(object) {
  process.stdout.write(JSON.stringify(object) + '\n');
}

function deadline() {
  return { deadline: Date.now() + TIMEOUT_MS };
}

// A unary call as a promise. The error grpc-js rejects with carries `code`
// (a number of grpc.status) and `details` (the server's message).
function unary(client, method, request) {
  return new Promise((resolve, reject) => {
    client[method](request, deadline(), (err, response) => (err ? reject(err) : resolve(response)));
  });
}

// An Any the loader could not decode (a type it has not loaded) is left as
// {type_url, value: Buffer}; shown with the bytes in base64.
function anyToJson(any) {
  if (!any) return null;
  if (Buffer.isBuffer(any.value)) return { type_url: any.type_url, value: any.value.toString('base64') };
  return any;
}

// Tags an error with the step that failed, for the message on stderr.
async function step(name, fn) {
  try {
    return await fn();
  } catch (err) {
    err.step = name;
    throw err;
  }
}

async function main(argv) {
  if (argv.length !== 4) {
    process.stderr.write('usage: node example.js <host:port> <classifier-model> <text-model> <image-file>\n');
    return 2;
  }
  const [address, classifier, textModel, imageFile] = argv;
  const image = fs.readFileSync(imageFile);
  const v1 = loadProtos();

  // The three service clients share one channel (one HTTP/2 connection);
  // closing the first closes it.
  const repository = new v1.ModelRepository(address, grpc.credentials.createInsecure());
  const shared = { channelOverride: repository.getChannel() };
  const classification = new v1.ImageClassification(address, grpc.credentials.createInsecure(), shared);
  const text = new v1.TextGeneration(address, grpc.credentials.createInsecure(), shared);

  try {
    // 1. The models being served. ModelInfo.task is the task id, a string.
    const { models } = await step('ListModels', () => unary(repository, 'ListModels', {}));
    for (const m of models) {
      emit({
        kind: 'model',
        name: m.name,
        spec: m.spec,
        task: m.task,
        state: m.state,
        weights: m.weights ? m.weights.source : null,
        devices: m.instances.map((i) => i.device),
        task_info: anyToJson(m.task_info),
      });
    }
    const classifierInfo = models.find((m) => m.name === classifier);
    if (!classifierInfo) throw new Error(`model ${JSON.stringify(classifier)} is not served`);

    // 2. Classify one image: its encoded file bytes go in the `encoded` member
    // of the Image oneof (a Buffer for a bytes field).
    const classified = await step('Classify', () =>
      unary(classification, 'Classify', { model: classifier, images: [{ encoded: image }], top_k: 3 }),
    );
    classified.results.forEach((result, i) => {
      for (const c of result.classes) emit({ kind: 'class', image: i, label: c.label, index: c.index, score: c.score });
    });

    // 3. Stream a generation: a server-streaming call is a Node Readable, so
    // `for await` reads it and throws the call's error, if any. finish_reason
    // and usage are set on the last message only.
    await step('Generate', async () => {
      const call = text.Generate({ model: textModel, prompt: 'Hello', max_new_tokens: 8 }, deadline());
      let last = null;
      for await (const chunk of call) {
        emit({ kind: 'delta', text: chunk.text, token_ids: chunk.token_ids });
        last = chunk;
      }
      if (!last) throw new Error('the stream ended without a message');
      emit({
        kind: 'final',
        finish_reason: last.finish_reason,
        prompt_tokens: last.usage ? last.usage.prompt_tokens : null,
        completion_tokens: last.usage ? last.usage.completion_tokens : null,
        time_to_first_token_ms: last.time_to_first_token_ms,
      });
    });

    // 4. A LoadModel the server rejects: the spec's settings have no such key.
    // The settings go as JSON text in `settings_json`: a plain object in the
    // google.protobuf.Struct field `settings` would be dropped without a word
    // by protobufjs (it wants {fields: {key: {numberValue: 1}}}, see README.md).
    await step('LoadModel', async () => {
      const request = {
        spec: classifierInfo.spec,
        model: 'node-bad',
        weights: 'random',
        devices: ['cpu'],
        settings_json: JSON.stringify({ no_such_setting: 1 }),
      };
      try {
        const loaded = await unary(repository, 'LoadModel', request);
        // Not expected; report it, and do not leave the model behind.
        emit({ kind: 'load_ok', model: loaded.model ? loaded.model.name : request.model });
        process.stderr.write('example.js: LoadModel accepted an unknown setting (expected INVALID_ARGUMENT)\n');
        await unary(repository, 'UnloadModel', { model: request.model });
      } catch (err) {
        if (typeof err.code !== 'number') throw err; // not a gRPC status: a bug here
        emit({ kind: 'load_error', code: grpc.status[err.code], details: err.details });
      }
    });
    return 0;
  } finally {
    text.close();
    classification.close();
    repository.close();
  }
}

main(process.argv.slice(2)).then(
  (code) => {
    process.exitCode = code;
  },
  (err) => {
    const where = err.step ? `${err.step}: ` : '';
    // A gRPC error by its status name; anything else by its message (the
    // stack as well when MODELPLEX_DEBUG is set).
    let what = err && err.message ? err.message : String(err);
    if (err && typeof err.code === 'number') what = `${grpc.status[err.code]}: ${err.details}`;
    else if (process.env.MODELPLEX_DEBUG && err && err.stack) what = err.stack;
    process.stderr.write(`example.js: ${where}${what}\n`);
    process.exitCode = 1;
  },
);
