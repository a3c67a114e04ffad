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

  /// A V4L2 camera. Raw formats (YUYV, NV12, …) are encoded to H.264 here; H.264 and MJPEG pass as they are.
  public struct V4L2: Sendable, Equatable {
    public var path: String
    /// FFmpeg's name for the camera format to ask for (yuyv422, nv12, mjpeg, h264); nil for the default.
    public var inputFormat: String?
    public var width: Int?
    public var height: Int?
    public var frameRate: Int?
    public var encoding = EncodingInput.Settings()

    public init(path: String) { self.path = path }
  }

  case testPattern(width: Int, height: Int, frameRate: Int)
  case v4l2(V4L2)
  case rtsp(url: String, transport: String, timeoutSeconds: Double)
  case file(path: String, pace: Pace, loop: Bool)
  /// Raw frames of one fixed picture, for benchmarks and LAN raw transport.
  case synthetic(width: Int, height: Int, pixelFormat: String, frameRate: Double)

  /// How the hello names the source kind, and the source without credentials.
  var kindAndLabel: (kind: SourceKind, label: String) {
    switch self {
    case .testPattern(let w, let h, let fps): return (.testPattern, "testsrc2 \(w)x\(h)@\(fps)")
    case .rtsp(let url, _, _): return (.rtsp, Self.withoutCredentials(url))
    case .v4l2(let camera): return (.v4l2, camera.path)
    case .file(let path, _, _): return (.file, path)
    case .synthetic(let w, let h, let format, _): return (.synthetic, "synthetic \(w)x\(h) \(format)")
    }
  }

  /// rtsp://user:secret@host/path → rtsp://host/path, so passwords never reach logs or the server.
  public static func withoutCredentials(_ url: String) -> String {
    guard var components = URLComponents(string: url), components.user != nil || components.password != nil else {
      return url
    }
    components.user = nil
    components.password = nil
    return components.string ?? url
  }
}

