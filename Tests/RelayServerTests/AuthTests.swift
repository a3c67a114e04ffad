import Foundation
import GRPCCore
import Testing

@testable import RelayServer

@Suite struct TokenFileTests {
  @Test func rulesGiveRolesAndDevices() throws {
    let file = try TokenFile.parse(
      """
      # site 1
      s3cret-publish   publish
      s3cret-viewer    consume,annotate   cam-*,door-?
      cert:edge-pi-1   publish            site1-*
      """
    ).get()
    #expect(file.grant(forToken: "s3cret-publish")?.roles == [.publish])
    let viewer = try #require(file.grant(forToken: "s3cret-viewer"))
    #expect(viewer.roles == [.consume, .annotate])
    #expect(viewer.allows(device: "cam-7") && viewer.allows(device: "door-1"))
    #expect(!viewer.allows(device: "door-12") && !viewer.allows(device: "yard"))
    #expect(file.grant(forToken: "s3cret") == nil)
    #expect(file.grant(forToken: "") == nil)
    #expect(file.grant(forCertificateNames: ["nobody", "edge-pi-1"])?.roles == [.publish])
    #expect(file.grant(forCertificateNames: ["edge-pi-2"]) == nil)
  }

  @Test func aDigestStandsForItsToken() throws {
    // printf %s correct-horse | sha256sum
    let hex = Data(TokenFile.digest("correct-horse")).map { String(format: "%02x", $0) }.joined()
    let file = try TokenFile.parse("sha256:\(hex) metrics\n").get()
    #expect(file.grant(forToken: "correct-horse")?.roles == [.metrics])
    #expect(file.grant(forToken: "sha256:\(hex)") == nil, "the digest itself is not a token")
  }

  @Test func identitiesNeverHoldTheToken() throws {
    let file = try TokenFile.parse("very-secret-token publish\n").get()
    let grant = try #require(file.grant(forToken: "very-secret-token"))
    #expect(!grant.identity.contains("very-secret-token"))
    #expect(grant.identity.hasPrefix("token sha256:"))
  }

  @Test func everyBadLineIsReportedWithItsNumber() {
    guard case .failure(let problems) = TokenFile.parse(
      """
      good publish
      lonely
      bad-role fly
      cert: publish
      good consume
      sha256:abc publish
      a b c d
      """)
    else { Issue.record("a file with bad lines parsed"); return }
    #expect(problems.all.map(\.line) == [2, 3, 4, 5, 6, 7])
    #expect(problems.all[1].message.contains("unknown role \"fly\""))
    #expect(problems.all[3].message.contains("twice"))
  }
}

@Suite struct FailureThrottleTests {
  @Test func delaysDoubleUpToTheCapPerAddress() {
    var throttle = FailureThrottle()
    let delays = (0..<9).map { throttle.refused(peer: "ipv4:10.0.0.1", nowNs: Int64($0)).delayMs }
    #expect(delays == [20, 40, 80, 160, 320, 640, 1280, 2000, 2000])
    #expect(throttle.refused(peer: "ipv4:10.0.0.2", nowNs: 10).delayMs == 20, "another address starts afresh")
  }

  @Test func aQuietMinuteForgives() {
    var throttle = FailureThrottle()
    for second in 0..<5 { _ = throttle.refused(peer: "p", nowNs: Int64(second) * 1_000_000_000) }
    #expect(throttle.refused(peer: "p", nowNs: 70_000_000_000).delayMs == 20)
  }

  @Test func logsOncePerPeerPerMinuteWithTheCount() {
    var throttle = FailureThrottle()
    #expect(throttle.refused(peer: "p", nowNs: 0).log)
    for ms in 1...99 { #expect(!throttle.refused(peer: "p", nowNs: Int64(ms) * 1_000_000).log) }
    let later = throttle.refused(peer: "p", nowNs: 61_000_000_000)
    #expect(later.log && later.refusalsSinceLog == 100)
  }

  @Test func peersAreCountedByAddressNotPort() {
    #expect(FailureThrottle.address(ofPeer: "ipv4:127.0.0.1:51234") == "ipv4:127.0.0.1")
    #expect(FailureThrottle.address(ofPeer: "ipv6:[::1]:51234") == "ipv6:[::1]")
    #expect(FailureThrottle.address(ofPeer: "unix:/tmp/x") == "unix:/tmp/x")
  }

  @Test func theTableIsBounded() {
    var throttle = FailureThrottle()
    throttle.capacity = 3
    for peer in 0..<10 { _ = throttle.refused(peer: "p\(peer)", nowNs: Int64(peer)) }
    #expect(throttle.refused(peer: "p9", nowNs: 20).delayMs == 40, "the newest is remembered")
    #expect(throttle.refused(peer: "p0", nowNs: 21).delayMs == 20, "the oldest was forgotten")
  }
}

@Suite struct AccessTests {
  @Test func withoutAGrantNothingIsAllowed() {
    #expect(!Access.allows(device: "cam-1"))
    #expect(throws: RPCError.self) { try Access.require(device: "cam-1") }
  }

  @Test func aGrantCoversItsDevicesOnly() throws {
    let grant = Grant(identity: "t", roles: [.consume], devices: [DevicePattern("cam-*")])
    try Access.$grant.withValue(grant) {
      try Access.require(device: "cam-1")
      #expect(!Access.allows(device: "other-1"))
      do {
        try Access.require(device: "other-1")
        Issue.record("other-1 was allowed")
      } catch {
        #expect((error as? RPCError)?.code == .permissionDenied)
      }
    }
    #expect(Access.$grant.withValue(.everything) { Access.allows(device: "anything") })
  }

  @Test func everyMethodNeedsItsRole() {
    func requirement(_ service: String, _ method: String) -> MethodRoles.Requirement {
      MethodRoles.requirement(for: MethodDescriptor(fullyQualifiedService: service, method: method))
    }
    let image = "chrys.cloud.videostreaming.v1beta1.Image"
    #expect(requirement("framerelay.v1.FrameRelay", "Publish") == .role(.publish))
    #expect(requirement("video", "Analyse") == .role(.publish))
    #expect(requirement(image, "VideoLatestImage") == .role(.consume))
    #expect(requirement(image, "SystemTime") == .role(.consume))
    #expect(requirement(image, "Annotate") == .role(.annotate))
    #expect(requirement(image, "Storage") == .role(.control))
    #expect(requirement(image, "Proxy") == .role(.control))
    #expect(requirement("grpc.health.v1.Health", "Check") == .open)
    #expect(requirement(image, "SomethingNew") == .unlisted)
  }
}
