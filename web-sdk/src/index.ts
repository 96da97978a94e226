export { OnstageMeeting, Stage, type ArgsOf, type JoinOptions, type Participant } from "./meeting.js";
export { OnstageError, type ErrorKind } from "./errors.js";
export {
  MEETING_EVENTS,
  STAGE_EVENTS,
  type ConnectionState,
  type EventOf,
  type MeetingEvent,
  type MeetingEventName,
  type StageEventName,
} from "./events.js";
export type { AnyListener, Listener } from "./emitter.js";
export { signalUrl, type FetchLike, type WebSocketConstructor, type WebSocketLike } from "./connection.js";
export { Mirror, type Applied } from "./mirror.js";
export {
  isFinal,
  MAX_TILE_SIDE,
  mayAcceptRequests,
  mayEndMeeting,
  mayKick,
  type AccessRequest,
  type CallArgs,
  type CallName,
  type CallResult,
  type Calls,
  type CloseReason,
  type ErrorBody,
  type ErrorCode,
  type IceServer,
  type LeaveReason,
  type MediaEvent,
  type MediaKinds,
  type ParticipantInfo,
  type Preset,
  type PublishedMedia,
  type RoomEvent,
  type RoomSnapshot,
  type StageAccess,
  type StageChangeReason,
  type StageStatus,
  type TileSize,
  type VideoLayer,
  type Welcome,
} from "./protocol.js";
export {
  BrowserStageMedia,
  SIMULCAST_LAYERS,
  activeEncodings,
  gatheringComplete,
  h264Preferences,
  mediaPlan,
  mediaProblem,
  simulcastPlan,
  tileSizes,
  type BrowserMediaOptions,
  type MediaAction,
  type MediaMeeting,
  type MediaProblem,
  type MediaProblemCode,
  type SimulcastPlan,
  type Tile,
} from "./media.js";
export {
  receptionOf,
  receptionSample,
  type Reception,
  type ReceptionSample,
  type StatsLike,
} from "./reception.js";
