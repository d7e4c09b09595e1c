/**
 * Where job events go: EventBridge (PutEvents on the configured bus) on AWS, or one JSON line on
 * the function's log (what `fanout dev` shows). The EventBridge client is loaded only when
 * first used, so functions that publish nothing do not pay its import.
 */
import {
  JOB_EVENT_DETAIL_TYPE,
  JOB_EVENT_SOURCE,
  type JobEventDetail,
  type JobEvents,
} from '#core/model/events.ts';

/** Publishes to an EventBridge bus (`default` unless named). A failed entry throws. */
export function eventBridgeEvents(busName: string): JobEvents {
  let client: Promise<{ send: (entry: JobEventDetail) => Promise<void> }> | undefined;
  const connect = async () => {
    const { EventBridgeClient, PutEventsCommand } = await import('@aws-sdk/client-eventbridge');
    const eventBridge = new EventBridgeClient({});
    return {
      async send(detail: JobEventDetail) {
        const out = await eventBridge.send(
          new PutEventsCommand({
            Entries: [
              {
                EventBusName: busName,
                Source: JOB_EVENT_SOURCE,
                DetailType: JOB_EVENT_DETAIL_TYPE,
                Resources: [],
                Detail: JSON.stringify(detail),
              },
            ],
          }),
        );
        if ((out.FailedEntryCount ?? 0) > 0) {
          throw new Error(`PutEvents failed: ${out.Entries?.[0]?.ErrorMessage ?? 'unknown'}`);
        }
      },
    };
  };
  return {
    async publish(detail) {
      client ??= connect();
      await (await client).send(detail);
    },
  };
}

/** Writes each event as one JSON line, as EventBridge would deliver it, to `write`. */
export function logEvents(write: (line: string) => void = console.log): JobEvents {
  return {
    async publish(detail) {
      write(
        JSON.stringify({ source: JOB_EVENT_SOURCE, 'detail-type': JOB_EVENT_DETAIL_TYPE, detail }),
      );
    },
  };
}
