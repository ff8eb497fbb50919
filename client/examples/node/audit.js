#!/usr/bin/env node
// Submits a typed BASELINE audit to a privaudit orchestrator, prints a line per
// progress event and attack result, then the text report, and exits 0 when the
// audit finished (2 when the task or the command line was refused as invalid, 1 on
// any other error).
//
//   node audit.js [HOST:PORT] [--target-model DIR] [--members DIR] [--non-members DIR]
//                 [--tls-ca FILE] [--tls-cert FILE --tls-key FILE] [--tls-server-name NAME]
//                 [--token-file FILE]
//
// HOST:PORT defaults to $PRIVAUDIT_ORCHESTRATOR. Folders are relative to the
// attack workers' storage root; the defaults are the repository's digits example.
// The TLS and token options are those of `privaudit`, with the same environment
// fallbacks (PRIVAUDIT_CLIENT_TLS_CA, ..._CERT, ..._KEY, ..._SERVER_NAME,
// PRIVAUDIT_CLIENT_TOKEN_FILE).
'use strict';

const fs = require('node:fs');
const path = require('node:path');
const { parseArgs } = require('node:util');
const grpc = require('@grpc/grpc-js');
const protoLoader = require('@grpc/proto-loader');

// The repository's protos. google/protobuf/timestamp.proto, which they import, is
// one of the well-known types bundled with protobufjs, so it needs no include dir.
const PROTO_ROOT = path.resolve(__dirname, '..', '..', '..', 'protos');
const ORCHESTRATOR_PROTO = 'privaudit/v1/orchestrator.proto';

const EXAMPLE = {
  'target-model': './example/models/digits_mlp',
  members: './example/datasets/digits_target_members',
  'non-members': './example/datasets/digits_target_non_members',
};

const EXIT_INVALID = 2; // as `privaudit run`: the task or the command line is invalid
const EXIT_FAILED = 1;

const USAGE = 'usage: node audit.js [HOST:PORT] [--target-model DIR] [--members DIR] [--non-members DIR]\n'
  + '                     [--tls-ca FILE] [--tls-cert FILE --tls-key FILE] [--tls-server-name NAME]\n'
  + '                     [--token-file FILE]\n'
  + '       (HOST:PORT defaults to $PRIVAUDIT_ORCHESTRATOR)';

// Each connection option, its environment fallback and what it holds (for error messages).
const CONNECTION_OPTIONS = {
  'tls-ca': { env: 'PRIVAUDIT_CLIENT_TLS_CA', what: 'the CA bundle' },
  'tls-cert': { env: 'PRIVAUDIT_CLIENT_TLS_CERT', what: 'the client certificate' },
  'tls-key': { env: 'PRIVAUDIT_CLIENT_TLS_KEY', what: "the client certificate's private key" },
  'tls-server-name': { env: 'PRIVAUDIT_CLIENT_TLS_SERVER_NAME', what: "the name in the server's certificate" },
  'token-file': { env: 'PRIVAUDIT_CLIENT_TOKEN_FILE', what: 'the token file' },
};

/** A connection option whose file or value cannot be used: exits 2, as an invalid task does. */
class SettingError extends Error {}

/** The bytes of the file an option names; a SettingError naming the option and the file when unreadable. */
function readOptionFile(option, file) {
  try {
    return fs.readFileSync(file);
  } catch (error) {
    throw new SettingError(`--${option}: cannot read ${CONNECTION_OPTIONS[option].what} '${file}': ${error.message}`);
  }
}

/**
 * The first token of a token file, read as privaudit's services read it: one token a
 * line, blank lines and lines starting with # skipped, a token printable ASCII
 * without spaces. Error messages never show a token.
 */
function firstToken(file) {
  const lines = readOptionFile('token-file', file).toString('utf8').split(/\r?\n/);
  for (const [index, line] of lines.entries()) {
    const token = line.trim();
    if (!token || token.startsWith('#')) continue;
    if (!/^[\x21-\x7e]+$/.test(token)) {
      throw new SettingError(`--token-file: ${file}, line ${index + 1}: a token must be printable ASCII without `
        + "spaces (write the token alone, without 'Bearer ')");
    }
    return token;
  }
  throw new SettingError(`--token-file: the token file '${file}' holds no token (one per line; # starts a comment)`);
}

/**
 * The channel credentials and options for `connection` (the parsed TLS options):
 * plaintext unless a CA or a client certificate is given, as with `privaudit`.
 */
function channelSecurity(connection) {
  const { 'tls-ca': ca, 'tls-cert': cert, 'tls-key': key, 'tls-server-name': serverName } = connection;
  if (Boolean(cert) !== Boolean(key)) {
    throw new SettingError('--tls-cert and --tls-key: the client certificate needs its private key: give both or neither');
  }
  if (!ca && !cert) {
    if (serverName) throw new SettingError('--tls-server-name needs TLS: give --tls-ca');
    return { credentials: grpc.credentials.createInsecure(), options: {} };
  }
  const credentials = grpc.credentials.createSsl(
    ca ? readOptionFile('tls-ca', ca) : null, // null: the system's CAs
    key ? readOptionFile('tls-key', key) : null,
    cert ? readOptionFile('tls-cert', cert) : null,
  );
  return { credentials, options: serverName ? { 'grpc.ssl_target_name_override': serverName } : {} };
}

/** The call metadata: `authorization: Bearer <token>` when a token file is given. */
function callMetadata(tokenFile) {
  const metadata = new grpc.Metadata();
  if (tokenFile) metadata.set('authorization', `Bearer ${firstToken(tokenFile)}`);
  return metadata;
}

/** The OrchestratorService client constructor, from the repo's .proto files. */
function loadOrchestratorService() {
  const definition = protoLoader.loadSync(ORCHESTRATOR_PROTO, {
    includeDirs: [PROTO_ROOT],
    defaults: true, // fields left at their zero value (attack_index 0, fraction 0) are still present
    enums: String, // enum values as their names, e.g. 'STAGE_LOAD'
    longs: String, // uint64 fields (sequence, seed) as decimal strings
    oneofs: true, // each message names its set oneof case, e.g. event.kind === 'progress'
  });
  return grpc.loadPackageDefinition(definition).privaudit.v1.OrchestratorService;
}

/** A Task message with one BASELINE attack (proto-loader takes camelCase field names). */
function baselineTask({ targetModel, members, nonMembers }) {
  return {
    attacks: [{
      type: 'ATTACK_TYPE_MEMBERSHIP_INFERENCE',
      baseline: { testDatasets: { members, nonMembers }, targetModel },
    }],
  };
}

/** 'RISK_LEVEL_HIGH' -> 'HIGH'. */
function shortName(enumName, prefix) {
  return enumName.startsWith(prefix) ? enumName.slice(prefix.length) : enumName;
}

/** 'INVALID_ARGUMENT' for grpc.status.INVALID_ARGUMENT. */
function statusName(code) {
  return Object.keys(grpc.status).find((name) => grpc.status[name] === code) ?? String(code);
}

/** Follows one audit's events: prints progress and results, gathers the report. */
class AuditPrinter {
  // The AuditEvent `kind` cases, each handled by the method of that name.
  static EVENT_KINDS = new Set(['accepted', 'progress', 'attackResult', 'reportSummary', 'reportChunk', 'done']);

  /** `format`: the report format asked for, e.g. 'REPORT_FORMAT_TEXT'. */
  constructor(out, format) {
    this.out = out;
    this.format = format;
    this.attackNames = [];
    this.reportChunks = [];
    this.outcome = null; // the done event, once it came
  }

  onEvent(event) {
    if (AuditPrinter.EVENT_KINDS.has(event.kind)) this[event.kind](event[event.kind], event);
  }

  accepted(accepted, event) {
    this.attackNames = accepted.attackNames;
    this.line(`accepted  audit ${event.taskId}: ${this.attackNames.join(', ')} (seed ${accepted.seed})`);
  }

  progress(progress) {
    const percent = Math.round(progress.fraction * 100);
    const note = progress.message ? `  ${progress.message}` : '';
    this.line(`progress  ${this.label(progress.attackIndex)} ${shortName(progress.stage, 'STAGE_')} ${percent}%${note}`);
  }

  attackResult(result) {
    const label = this.label(result.attackIndex);
    if (result.status === 'ATTACK_STATUS_SUCCEEDED') {
      const { auc, advantage, accuracy } = result.metrics;
      this.line(`result    ${label} SUCCEEDED  auc ${auc.toFixed(4)}  advantage ${advantage.toFixed(4)}`
        + `  accuracy ${accuracy.toFixed(4)}`);
    } else {
      const { code, field, message } = result.error;
      this.line(`result    ${label} FAILED  ${code}${field ? ` at ${field}` : ''}: ${message}`);
    }
  }

  reportSummary(summary) {
    this.line(`summary   overall risk ${shortName(summary.overallRisk, 'RISK_LEVEL_')}`);
  }

  // The stream carries the format asked for and, after it, the JSON report (each with its own `last`).
  reportChunk(chunk) {
    if (chunk.format === this.format) this.reportChunks.push(chunk.data);
  }

  done(done) {
    this.outcome = done;
    if (this.reportChunks.length > 0) {
      this.out.write(`\n${Buffer.concat(this.reportChunks).toString('utf8')}\n`);
    }
    this.line(`done      ${done.succeededAttacks} succeeded, ${done.failedAttacks} failed, `
      + `overall risk ${shortName(done.overallRisk, 'RISK_LEVEL_')}${done.cancelled ? ' (cancelled)' : ''}`);
  }

  label(attackIndex) {
    return `[${attackIndex + 1}/${this.attackNames.length} ${this.attackNames[attackIndex] ?? '?'}]`;
  }

  line(text) {
    this.out.write(`${text}\n`);
  }
}

/** Streams SubmitAudit into the printer; resolves with the call's error, or null when it ended OK. */
function followAudit(client, request, metadata, printer) {
  return new Promise((resolve) => {
    const call = client.SubmitAudit(request, metadata);
    call.on('data', (response) => printer.onEvent(response.event));
    call.on('error', resolve);
    call.on('end', () => resolve(null));
  });
}

function parseCommandLine(argv) {
  const { values, positionals } = parseArgs({
    args: argv,
    allowPositionals: true,
    options: {
      'target-model': { type: 'string', default: EXAMPLE['target-model'] },
      members: { type: 'string', default: EXAMPLE.members },
      'non-members': { type: 'string', default: EXAMPLE['non-members'] },
      ...Object.fromEntries(Object.keys(CONNECTION_OPTIONS).map((name) => [name, { type: 'string' }])),
    },
  });
  const address = positionals[0] ?? process.env.PRIVAUDIT_ORCHESTRATOR;
  if (!address || positionals.length > 1) throw new Error('give the orchestrator address once');
  const connection = Object.fromEntries(Object.entries(CONNECTION_OPTIONS).map(
    ([name, { env }]) => [name, values[name] ?? (process.env[env] || undefined)]));
  return {
    address,
    connection,
    task: baselineTask({
      targetModel: values['target-model'], members: values.members, nonMembers: values['non-members'],
    }),
  };
}

async function main() {
  let options;
  let security;
  let metadata;
  try {
    options = parseCommandLine(process.argv.slice(2));
    security = channelSecurity(options.connection);
    metadata = callMetadata(options.connection['token-file']);
  } catch (error) {
    const usage = error instanceof SettingError ? '' : `\n${USAGE}`; // the command line's own errors
    process.stderr.write(`audit.js: ${error.message}${usage}\n`);
    return EXIT_INVALID;
  }
  const OrchestratorService = loadOrchestratorService();
  const client = new OrchestratorService(options.address, security.credentials, security.options);
  const reportFormat = 'REPORT_FORMAT_TEXT';
  const printer = new AuditPrinter(process.stdout, reportFormat);
  try {
    const error = await followAudit(
      client, { task: options.task, reportFormat }, metadata, printer);
    if (error) {
      process.stderr.write(`audit.js: SubmitAudit failed: ${statusName(error.code)}: ${error.details}\n`);
      return error.code === grpc.status.INVALID_ARGUMENT ? EXIT_INVALID : EXIT_FAILED;
    }
  } finally {
    client.close();
  }
  if (!printer.outcome) {
    process.stderr.write('audit.js: the stream ended without a done event\n');
    return EXIT_FAILED;
  }
  if (printer.outcome.error || printer.outcome.cancelled) {
    process.stderr.write(`audit.js: the audit did not finish: ${printer.outcome.error || 'cancelled'}\n`);
    return EXIT_FAILED;
  }
  return 0;
}

main().then((code) => { process.exitCode = code; });
