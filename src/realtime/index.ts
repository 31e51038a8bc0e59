export { RealtimeServer } from './server';
export type { RealtimeServerOptions, ConnectInfo, ConnectResult, DrainOptions } from './server';
export type {
  Channel,
  ChannelSocket,
  Assigns,
  JoinResult,
  HandleInResult,
  HandleInfoResult,
  InfoBroadcast,
  TerminateReason,
} from './channel';
export { PubSub, LocalPubSubAdapter, Fanout } from './pubsub';
export type { PubSubAdapter, PubSubMessage, Subscriber } from './pubsub';
export { V1Serializer, V2Serializer, negotiateSerializer, ProtocolError } from './serializer';
export type { Serializer, EncodedFrame } from './serializer';
export type { InboundMessage, OutboundMessage, Payload, Ref } from './message';
export { nestedDeeperThan } from './message';
export type { RealtimeStats } from './connection';
export { CloseCode, rejectUpgrade, TRANSPORT_KIND } from './transport';
export { decodeQuery } from './params';
export type { Params, ParamValue } from './params';
export type { CheckOrigin } from './origin';
export type { RealtimeLogger, LogLimit } from './logger';
export { LineBudget, RateLimitedLogger } from './logger';
export type { LongPollOptions } from './longpoll';
export type { Transport, TransportCounts, TransportEndpoint, TransportKind } from './transport';
export type { Authorized, HostedTransport, TransportHost } from './host';
export type { BuiltInTransportOptions } from './builtin';
export type { Connection } from './connection';
export type { ClusterBus, BusMessage } from './bus';
export { Presence, presenceRef } from './presence';
export type { PresenceMeta, PresenceState, PresenceDiff, PresenceOptions } from './presence';
