import {
  defaultPayloadConverter,
  type ConverterHint,
  type Payload,
  type PayloadConverter,
  type SerializationContext,
} from '@temporalio/common';

/**
 * What a message argument becomes when its payload cannot be decoded (an unknown `encoding` such as
 * `binary/garbage`, or `json/plain` bytes that are not JSON). Handlers and validators reject it like any other bad
 * argument (see `message-validation.ts`).
 */
export interface UndecodablePayload {
  readonly undecodablePayload: {
    /** The payload's `encoding` metadata, shortened and stripped of control characters. */
    readonly encoding: string;
    readonly problem: 'unknown encoding' | 'invalid data for its encoding';
  };
}

export function isUndecodable(value: unknown): value is UndecodablePayload {
  return typeof value === 'object' && value !== null && 'undecodablePayload' in value;
}

/** How an undecodable argument is named in a rejection: one line, no payload bytes. */
export function describeUndecodable(value: UndecodablePayload): string {
  const { encoding, problem } = value.undecodablePayload;
  return `its payload cannot be decoded (${problem} "${encoding}"); send JSON (encoding json/plain)`;
}

const MAX_ENCODING_CHARS = 64;

function encodingOf(payload: Payload): string {
  const raw = payload.metadata?.encoding;
  if (!raw) return 'none';
  // The encoding name came from whoever sent the message: keep it short and printable.
  const text = new TextDecoder().decode(raw).replace(/[^\x20-\x7e]/g, '?');
  return text.length > MAX_ENCODING_CHARS ? `${text.slice(0, MAX_ENCODING_CHARS)}…` : text;
}

/**
 * The SDK's default converter, except that decoding never throws. In SDK 1.24 a decode error in a signal's or a
 * workflow's arguments is thrown in the middle of a workflow activation: the workflow task fails and is retried
 * forever, and because the worker shares one V8 context between workflows (`reuseV8Context`), the continuations
 * the failed activation had already queued run during the next workflow's activation and schedule their commands
 * there (one budget ran another's activities; nondeterminism errors in healthy workflows). Returning a recognisable
 * value instead lets the handler reject the message and the activation complete. Encoding is unchanged.
 */
class TolerantPayloadConverter implements PayloadConverter {
  toPayload: PayloadConverter['toPayload'] = (value, context, hint) =>
    defaultPayloadConverter.toPayload(value, context, hint);

  fromPayload<T>(payload: Payload, context?: SerializationContext, hint?: ConverterHint<T>): T {
    try {
      return defaultPayloadConverter.fromPayload<T>(payload, context, hint);
    } catch (error) {
      const problem = /unknown encoding/i.test((error as Error)?.message ?? '')
        ? 'unknown encoding'
        : 'invalid data for its encoding';
      const value: UndecodablePayload = { undecodablePayload: { encoding: encodingOf(payload), problem } };
      return value as T;
    }
  }
}

/** Loaded by the SDK through `payloadConverterPath` (the export must be named `payloadConverter`). */
export const payloadConverter: PayloadConverter = new TolerantPayloadConverter();
