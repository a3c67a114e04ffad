import Foundation
import RelayCore

/// Counters of one publisher run; what the status line and the summary show.
struct PublishStats: Sendable {
  var framesCaptured = 0
  var framesDropped = 0
  var framesSent = 0
  var framesAcked = 0
  /// Sent and never acked in time (AVA extensions that drop acks).
  var framesLost = 0
  /// Frames an earlier run spooled and did not get acknowledged (sent by this run).
  var framesRestored = 0
  var bytesSent = 0
  var bytesAcked = 0
  var reconnects = 0
  var reconnectMs: [Int] = []
  var roundTrips = LatencySamples()
}

/// The one JSON line relay-client prints on exit.
public struct PublishSummary: Sendable, Encodable {
  public var event = "summary"
  public var device: String
  public var framesCaptured: Int
  public var framesDropped: Int
  public var framesSent: Int
  public var framesAcked: Int
  public var bytesSent: Int
  public var seconds: Double
  public var fps: Double
  public var framesLost: Int
  public var framesRestored: Int
  public var ackRttP50Ms: Double
  public var ackRttP99Ms: Double
  public var reconnects: Int
  public var reconnectMs: [Int]

  public var json: String {
    let encoder = JSONEncoder()
    encoder.keyEncodingStrategy = .convertToSnakeCase
    encoder.outputFormatting = [.sortedKeys]
    return (try? String(decoding: encoder.encode(self), as: UTF8.self)) ?? "{}"
  }
}

extension PublishSummary {
  /// A gateway's summary: one line, every camera's summary in `cameras`.
  public static func json(cameras: [PublishSummary]) -> String {
    struct Gateway: Encodable {
      var event = "summary"
      var cameras: [PublishSummary]
    }
    let encoder = JSONEncoder()
    encoder.keyEncodingStrategy = .convertToSnakeCase
    encoder.outputFormatting = [.sortedKeys]
    return (try? String(decoding: encoder.encode(Gateway(cameras: cameras)), as: UTF8.self)) ?? "{}"
  }
}
