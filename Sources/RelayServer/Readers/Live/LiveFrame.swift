import Foundation

/// One decoded picture ready for consumers: packed bgr24 plus what VideoFrame reports about it.
struct LiveFrame: Sendable {
  var packetIndex: UInt64
  var sequence: UInt64
  var keyframeSequence: UInt64
  var bgr24: Data
  var width: Int
  var height: Int
  var timestampMs: Int64
  var pts: Int64
  var dts: Int64
  var isKeyframe: Bool
  var pictureType: String
  var isCorrupt: Bool
  var codec: CodecConfiguration
  /// The packet's `storedNs` and when its picture was ready (monotonic ns): the server's share of a
  /// consumer's latency (framerelay_decode_lag_seconds, framerelay_consumer_frame_age_seconds).
  var storedNs: UInt64
  var decodedNs: UInt64
}
