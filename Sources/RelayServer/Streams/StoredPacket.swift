import Foundation
import RelayCore

/// A packet as the server keeps it: the client's bytes plus the server's own numbering and clock.
struct StoredPacket: Sendable {
  /// Monotonic per device across sessions: what consumers' cursors compare.
  var index: UInt64
  /// The publishing session's sequence number (VideoFrame.packet).
  var sequence: UInt64
  var data: Data
  var pts: Int64
  var dts: Int64
  var isKeyframe: Bool
  /// Capture time moved onto the server clock, ms since the Unix epoch.
  var timestampMs: Int64
  /// The client dropped frames right before this one (it is then a keyframe): decoders start afresh.
  var followsGap: Bool = false
  /// When the ring took it (monotonic ns; 0 for packets read back from recordings): consumer latency
  /// is measured from here.
  var storedNs: UInt64 = 0
  /// The codec these bytes are in; changes only with a new hello.
  var codec: CodecConfiguration
}

/// A device's codec as of one hello; compared by identity so a decoder knows when to reopen.
final class CodecConfiguration: Sendable {
  let description: CodecDescription
  init(_ description: CodecDescription) { self.description = description }
}
