import Foundation
import Media
import RelayCore

/// What to capture, as the command line says it. Opening happens on the capture thread (it blocks).
public enum SourceSpec: Sendable, Equatable {
  public enum Pace: String, Sendable {
    /// As the timestamps say, like a camera.
    case realtime
    /// As fast as the network takes it (benchmarks, bulk upload).
    case fast
  }

  case testPattern(width: Int, height: Int, frameRate: Int)
  case rtsp(url: String, transport: String, timeoutSeconds: Double)
  case file(path: String, pace: Pace, loop: Bool)
  /// Raw frames of one fixed picture, for benchmarks and LAN raw transport.
  case synthetic(width: Int, height: Int, pixelFormat: String, frameRate: Double)

  /// How the hello names the source kind, and the source without credentials.
  var kindAndLabel: (kind: SourceKindLabel, label: String) {
    switch self {
    case .testPattern(let w, let h, let fps): return (.testPattern, "testsrc2 \(w)x\(h)@\(fps)")
    case .rtsp(let url, _, _): return (.rtsp, Self.withoutCredentials(url))
    case .file(let path, _, _): return (.file, path)
    case .synthetic(let w, let h, let format, _): return (.synthetic, "synthetic \(w)x\(h) \(format)")
    }
  }

  /// rtsp://user:secret@host/path → rtsp://host/path, so passwords never reach logs or the server.
  static func withoutCredentials(_ url: String) -> String {
    guard var components = URLComponents(string: url), components.user != nil || components.password != nil else {
      return url
    }
    components.user = nil
    components.password = nil
    return components.string ?? url
  }
}

enum SourceKindLabel {
  case rtsp, file, testPattern, synthetic
}
