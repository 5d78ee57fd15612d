#!/usr/bin/env node
// DEV ONLY: the local stand-ins for what carries events in AWS (docs/events.md), so the real `publish-events`
// runs locally on the real stream:
//   - the event source mapping: reads the table's stream on dynoxide (DynamoDB Streams API), keeps outbox
//     inserts as the template's filter does, hands them to `publish-events` through `cargo lambda watch` in
//     batches, and honours `batchItemFailures` (resends from the first failed record, as Lambda does);
//   - the EventBridge bus: answers `AWSEvents.PutEvents` (publish-events points at it with
//     AWS_ENDPOINT_URL_EVENTBRIDGE), prints one line per event and appends each envelope to EVENTS_LOG (JSON lines).
// Nothing here is deployed; it listens on loopback only.
//
//   node dev/event-pipeline.mjs
//
// Environment:
//   AWS_ENDPOINT_URL_DYNAMODB  dynoxide (required)      TABLE_NAME         the table (required)
//   LAMBDA_INVOKE_URL          cargo lambda watch (required)
//   EVENT_BUS_PORT             the stand-in bus's port (default 4010, bound to 127.0.0.1)
//   EVENTS_LOG                 where envelopes are appended (default .local/logs/events.jsonl)
//   EVENT_POLL_MS              how often the stream is read when idle (default 500)
// It enables the table's stream (NEW_IMAGE) if it is off, and starts at the stream's end: events written before it
// started are not published (locally; in AWS the mapping starts from its own checkpoint).
import { appendFileSync, mkdirSync } from 'node:fs';
import { createServer } from 'node:http';
import { dirname } from 'node:path';
import { randomUUID } from 'node:crypto';
import { pathToFileURL } from 'node:url';

const BATCH_SIZE = 100; // the template's BatchSize
const FUNCTION = 'publish-events';

/** One call of DynamoDB's or DynamoDB Streams' JSON API on dynoxide (it accepts any well-formed signature). */
export async function dynamoCall(endpoint, target, body) {
  const response = await fetch(`${endpoint}/`, {
    method: 'POST',
    headers: {
      'content-type': 'application/x-amz-json-1.0',
      'x-amz-target': target,
      'x-amz-date': '20261207T000000Z',
      authorization:
        'AWS4-HMAC-SHA256 Credential=local/20261207/us-east-1/dynamodb/aws4_request, SignedHeaders=host;x-amz-date, Signature=0',
    },
    body: JSON.stringify(body),
  });
  const text = await response.text();
  if (!response.ok) throw new Error(`${target}: ${response.status} ${text}`);
  return text ? JSON.parse(text) : {};
}

/** Whether a stream record is one the template's filter passes: an outbox item's INSERT. */
export function isOutboxInsert(record) {
  return record.eventName === 'INSERT' && String(record.dynamodb?.Keys?.sk?.S ?? '').startsWith('OUTBOX#');
}

/** A one-line summary of an event envelope for the terminal. */
export function describeEvent(envelope) {
  const d = envelope.detail ?? {};
  const who = d.accountId ?? d.agencyId ?? '';
  const facts = Object.entries(d)
    .filter(([k, v]) => !['accountId', 'agencyId'].includes(k) && (typeof v !== 'object' || v === null))
    .map(([k, v]) => `${k}=${v}`)
    .join(' ');
  return `[event] ${envelope.type} ${who} ${facts}`.trimEnd();
}

/** The stand-in bus: answers PutEvents, hands every envelope to `onEvent`. */
export function createBus(onEvent) {
  return createServer((req, res) => {
    const chunks = [];
    req.on('data', (c) => chunks.push(c));
    req.on('end', () => {
      if (req.method !== 'POST' || String(req.headers['x-amz-target']).toLowerCase() !== 'awsevents.putevents') {
        res.writeHead(400, { 'content-type': 'application/x-amz-json-1.1' });
        res.end(JSON.stringify({ __type: 'ValidationException', message: 'only PutEvents is served here' }));
        return;
      }
      const request = JSON.parse(Buffer.concat(chunks).toString('utf8'));
      const entries = (request.Entries ?? []).map((entry) => {
        onEvent(JSON.parse(entry.Detail), entry);
        return { EventId: randomUUID() };
      });
      res.writeHead(200, { 'content-type': 'application/x-amz-json-1.1' });
      res.end(JSON.stringify({ FailedEntryCount: 0, Entries: entries }));
    });
  });
}

/** Turns on the table's stream if it is off; returns the stream's ARN. */
async function ensureStream(endpoint, table) {
  const { Table } = await dynamoCall(endpoint, 'DynamoDB_20120810.DescribeTable', { TableName: table });
  if (!Table.StreamSpecification?.StreamEnabled) {
    await dynamoCall(endpoint, 'DynamoDB_20120810.UpdateTable', {
      TableName: table,
      StreamSpecification: { StreamEnabled: true, StreamViewType: 'NEW_IMAGE' },
    });
  }
  const { Streams } = await dynamoCall(endpoint, 'DynamoDBStreams_20120810.ListStreams', { TableName: table });
  if (!Streams?.length) throw new Error(`table ${table} has no stream`);
  return Streams[0].StreamArn;
}

/** Invokes publish-events with `records`; returns the sequence number of the first failed record, if any. */
async function publish(invokeUrl, records) {
  const response = await fetch(`${invokeUrl}/2015-03-31/functions/${FUNCTION}/invocations`, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify({ Records: records }),
  });
  const text = await response.text();
  if (!response.ok) return { error: `${response.status} ${text}` };
  const answer = text ? JSON.parse(text) : {};
  if (answer.errorType) return { error: `${answer.errorType}: ${answer.errorMessage}` };
  return { failedAt: answer.batchItemFailures?.[0]?.itemIdentifier };
}

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

/** The event source mapping's loop: from the stream's end, outbox inserts to publish-events, in order. */
async function pump({ endpoint, table, invokeUrl, pollMs, log }) {
  const arn = await ensureStream(endpoint, table);
  const { StreamDescription } = await dynamoCall(endpoint, 'DynamoDBStreams_20120810.DescribeStream', { StreamArn: arn });
  // dynoxide has one shard per table (docs/events.md).
  const shard = StreamDescription.Shards[0].ShardId;
  let { ShardIterator: iterator } = await dynamoCall(endpoint, 'DynamoDBStreams_20120810.GetShardIterator', {
    StreamArn: arn,
    ShardId: shard,
    ShardIteratorType: 'TRIM_HORIZON',
  });
  // Skip what is already there (dynoxide's LATEST starts at the beginning too).
  let skipped = 0;
  for (;;) {
    const page = await dynamoCall(endpoint, 'DynamoDBStreams_20120810.GetRecords', { ShardIterator: iterator });
    iterator = page.NextShardIterator;
    if (!page.Records?.length) break;
    skipped += page.Records.length;
  }
  log(`event pipeline: reading ${arn} from its end (${skipped} earlier records skipped)`);
  const pending = [];
  for (;;) {
    const page = await dynamoCall(endpoint, 'DynamoDBStreams_20120810.GetRecords', {
      ShardIterator: iterator,
      Limit: 1000,
    });
    iterator = page.NextShardIterator;
    pending.push(...(page.Records ?? []).filter(isOutboxInsert).map((r) => ({ ...r, eventSourceARN: arn })));
    while (pending.length) {
      const batch = pending.slice(0, BATCH_SIZE);
      const result = await publish(invokeUrl, batch);
      if (result.error) {
        log(`event pipeline: ${FUNCTION} failed (${result.error}); the batch is resent in 2 s`);
        await sleep(2000);
        continue;
      }
      const failed = batch.findIndex((r) => r.dynamodb.SequenceNumber === result.failedAt);
      if (result.failedAt !== undefined && failed >= 0) {
        pending.splice(0, failed);
        log(`event pipeline: ${FUNCTION} handed back ${result.failedAt}; resent from there in 1 s`);
        await sleep(1000);
        continue;
      }
      pending.splice(0, batch.length);
    }
    if (!page.Records?.length) await sleep(pollMs);
  }
}

async function main() {
  const endpoint = process.env.AWS_ENDPOINT_URL_DYNAMODB;
  const table = process.env.TABLE_NAME;
  const invokeUrl = process.env.LAMBDA_INVOKE_URL;
  if (!endpoint || !table || !invokeUrl) {
    console.error('event-pipeline: AWS_ENDPOINT_URL_DYNAMODB, TABLE_NAME and LAMBDA_INVOKE_URL are required');
    process.exit(2);
  }
  const port = Number(process.env.EVENT_BUS_PORT ?? 4010);
  const eventsLog = process.env.EVENTS_LOG ?? '.local/logs/events.jsonl';
  mkdirSync(dirname(eventsLog), { recursive: true });
  const log = (line) => console.log(line);
  const bus = createBus((envelope) => {
    appendFileSync(eventsLog, `${JSON.stringify(envelope)}\n`);
    log(describeEvent(envelope));
  });
  await new Promise((resolve) => bus.listen(port, '127.0.0.1', resolve));
  log(`event pipeline: stand-in EventBridge bus on http://127.0.0.1:${port}, envelopes in ${eventsLog}`);
  const pollMs = Number(process.env.EVENT_POLL_MS ?? 500);
  for (;;) {
    try {
      await pump({ endpoint, table, invokeUrl, pollMs, log });
    } catch (error) {
      log(`event pipeline: ${error.message}; starting again in 2 s`);
      await sleep(2000);
    }
  }
}

if (import.meta.url === pathToFileURL(process.argv[1] ?? '').href) await main();
