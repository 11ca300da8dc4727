#pragma once
// A thin fluent wrapper over libnftnl expressions, so rules read in the order the kernel
// evaluates them. Registers: NFT_REG_1 for single values, NFT_REG32_xx for concatenations.

#include <cstdio>  // libnftnl/expr.h uses FILE without including it
#include <libnftnl/expr.h>
#include <libnftnl/rule.h>
#include <linux/netfilter/nf_tables.h>

#include <cstdint>
#include <string>

#include "proxier/model/ip.h"

namespace sliceproxy::backends::nft {

inline constexpr uint32_t reg32(int n) { return NFT_REG32_00 + n; }

class RuleBuilder {
 public:
  RuleBuilder();
  ~RuleBuilder();
  RuleBuilder(const RuleBuilder&) = delete;
  RuleBuilder& operator=(const RuleBuilder&) = delete;

  RuleBuilder& payload(uint32_t base, uint32_t offset, uint32_t len, uint32_t dreg);
  RuleBuilder& cmp(uint32_t sreg, uint32_t op, const void* data, uint32_t len);
  RuleBuilder& cmpU32(uint32_t sreg, uint32_t op, uint32_t value) { return cmp(sreg, op, &value, 4); }
  RuleBuilder& meta(uint32_t key, uint32_t dreg);
  RuleBuilder& metaSet(uint32_t key, uint32_t sreg);
  RuleBuilder& immediate(uint32_t dreg, const void* data, uint32_t len);
  RuleBuilder& immediateU32(uint32_t dreg, uint32_t value) { return immediate(dreg, &value, 4); }
  RuleBuilder& verdict(int code, const std::string& chain = "");
  RuleBuilder& lookup(uint32_t sreg, const std::string& set, bool invert = false);
  RuleBuilder& mapLookup(uint32_t sreg, const std::string& set, uint32_t dreg);
  RuleBuilder& numgen(uint32_t dreg, uint32_t modulus, uint32_t offset = 0);
  // A constant that `nft list` can still print inside a concatenation (an immediate cannot).
  RuleBuilder& constant(uint32_t dreg, uint32_t value) { return numgen(dreg, 1, value); }
  RuleBuilder& bitwise(uint32_t sreg, uint32_t dreg, uint32_t len, const void* mask, const void* xorv);
  RuleBuilder& fib(uint32_t flags, uint32_t result, uint32_t dreg);
  // `dir`: IP_CT_DIR_ORIGINAL or IP_CT_DIR_REPLY for keys that have a direction, else -1.
  RuleBuilder& ct(uint32_t key, uint32_t dreg, int dir = -1);
  RuleBuilder& nat(uint32_t type, uint32_t family, uint32_t regAddr, uint32_t regProto, uint32_t flags);
  RuleBuilder& masq(uint32_t flags);
  RuleBuilder& reject(uint32_t type, uint8_t code);
  RuleBuilder& dynset(uint32_t op, const std::string& set, uint32_t sregKey, uint32_t sregData,
                      uint64_t timeoutMs);
  RuleBuilder& counter();

  // Matches: the packet's source/destination address equals or lies in `cidr`.
  RuleBuilder& matchAddr(bool source, const proxier::Cidr& cidr, bool negate = false);
  RuleBuilder& matchAddr(bool source, const proxier::IpAddr& addr);
  RuleBuilder& loadAddr(bool source, proxier::IpFamily family, uint32_t dreg);
  // meta mark |= bits (or &= ~bits with clear).
  RuleBuilder& markSet(uint32_t bits, bool clear = false);
  RuleBuilder& markTest(uint32_t bits, bool set);
  RuleBuilder& fibAddrTypeLocal(bool source);
  RuleBuilder& iifname(const std::string& name, bool prefix, bool negate);

  nftnl_rule* release();

 private:
  RuleBuilder& add(nftnl_expr* e);
  nftnl_rule* rule_;
  proxier::IpFamily family_ = proxier::IpFamily::V4;

 public:
  RuleBuilder& family(proxier::IpFamily f) {
    family_ = f;
    return *this;
  }
};

}  // namespace sliceproxy::backends::nft
