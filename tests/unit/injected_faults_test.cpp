#include "proxier/core/injected_faults.h"

#include <gtest/gtest.h>

#include <cerrno>

namespace sliceproxy::proxier {
namespace {

struct Disarm {
  ~Disarm() { armFaults(""); }
};

TEST(InjectedFaults, UnarmedPointsInjectNothing) {
  Disarm d;
  ASSERT_EQ(armFaults(""), "");
  EXPECT_FALSE(faultsArmed());
  EXPECT_EQ(injectedFault(FaultPoint::NftCommit), 0);
  EXPECT_EQ(describeArmedFaults(), "none");
}

TEST(InjectedFaults, CountsAreConsumedPerPoint) {
  Disarm d;
  ASSERT_EQ(armFaults("nft-commit:ENOBUFS:once\nconntrack-delete:EPERM:2"), "");
  EXPECT_EQ(describeArmedFaults(), "nft-commit ENOBUFS x1, conntrack-delete EPERM x2");
  EXPECT_EQ(injectedFault(FaultPoint::NftAckOverrun), 0);
  EXPECT_EQ(injectedFault(FaultPoint::NftCommit), ENOBUFS);
  EXPECT_EQ(injectedFault(FaultPoint::NftCommit), 0);
  EXPECT_EQ(injectedFault(FaultPoint::ConntrackDelete), EPERM);
  EXPECT_EQ(injectedFault(FaultPoint::ConntrackDelete), EPERM);
  EXPECT_EQ(injectedFault(FaultPoint::ConntrackDelete), 0);
}

TEST(InjectedFaults, AlwaysStaysArmedUntilReplaced) {
  Disarm d;
  ASSERT_EQ(armFaults("nft-commit:ENOMEM:always"), "");
  for (int i = 0; i < 3; ++i) EXPECT_EQ(injectedFault(FaultPoint::NftCommit), ENOMEM);
  ASSERT_EQ(armFaults("nft-ack-overrun:ENOBUFS"), "");
  EXPECT_EQ(injectedFault(FaultPoint::NftCommit), 0);
  EXPECT_EQ(injectedFault(FaultPoint::NftAckOverrun), ENOBUFS);
}

TEST(InjectedFaults, BadSpecsAreRefusedAndArmNothing) {
  Disarm d;
  EXPECT_NE(armFaults("nft-commit:EWHAT"), "");
  EXPECT_NE(armFaults("nowhere:EPERM"), "");
  EXPECT_NE(armFaults("nft-commit:EPERM:0"), "");
  EXPECT_NE(armFaults("nft-commit:EPERM:3x"), "");
  EXPECT_FALSE(faultsArmed());
}

}  // namespace
}  // namespace sliceproxy::proxier
