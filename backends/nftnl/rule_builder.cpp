// glibc's <netinet/in.h> must come before any <linux/...> header that pulls in <linux/in.h>.
#include <netinet/in.h>

#include "backends/nftnl/rule_builder.h"

#include <linux/netfilter.h>
#include <net/if.h>

#include <cstring>
#include <vector>

namespace sliceproxy::backends::nft {

using proxier::IpFamily;

RuleBuilder::RuleBuilder() : rule_(nftnl_rule_alloc()) {}
RuleBuilder::~RuleBuilder() {
  if (rule_) nftnl_rule_free(rule_);
}

nftnl_rule* RuleBuilder::release() {
  nftnl_rule* r = rule_;
  rule_ = nullptr;
  return r;
}

RuleBuilder& RuleBuilder::add(nftnl_expr* e) {
  nftnl_rule_add_expr(rule_, e);
  return *this;
}

RuleBuilder& RuleBuilder::payload(uint32_t base, uint32_t offset, uint32_t len, uint32_t dreg) {
  nftnl_expr* e = nftnl_expr_alloc("payload");
  nftnl_expr_set_u32(e, NFTNL_EXPR_PAYLOAD_BASE, base);
  nftnl_expr_set_u32(e, NFTNL_EXPR_PAYLOAD_OFFSET, offset);
  nftnl_expr_set_u32(e, NFTNL_EXPR_PAYLOAD_LEN, len);
  nftnl_expr_set_u32(e, NFTNL_EXPR_PAYLOAD_DREG, dreg);
  return add(e);
}

RuleBuilder& RuleBuilder::cmp(uint32_t sreg, uint32_t op, const void* data, uint32_t len) {
  nftnl_expr* e = nftnl_expr_alloc("cmp");
  nftnl_expr_set_u32(e, NFTNL_EXPR_CMP_SREG, sreg);
  nftnl_expr_set_u32(e, NFTNL_EXPR_CMP_OP, op);
  nftnl_expr_set(e, NFTNL_EXPR_CMP_DATA, data, len);
  return add(e);
}

RuleBuilder& RuleBuilder::meta(uint32_t key, uint32_t dreg) {
  nftnl_expr* e = nftnl_expr_alloc("meta");
  nftnl_expr_set_u32(e, NFTNL_EXPR_META_KEY, key);
  nftnl_expr_set_u32(e, NFTNL_EXPR_META_DREG, dreg);
  return add(e);
}

RuleBuilder& RuleBuilder::metaSet(uint32_t key, uint32_t sreg) {
  nftnl_expr* e = nftnl_expr_alloc("meta");
  nftnl_expr_set_u32(e, NFTNL_EXPR_META_KEY, key);
  nftnl_expr_set_u32(e, NFTNL_EXPR_META_SREG, sreg);
  return add(e);
}

RuleBuilder& RuleBuilder::immediate(uint32_t dreg, const void* data, uint32_t len) {
  nftnl_expr* e = nftnl_expr_alloc("immediate");
  nftnl_expr_set_u32(e, NFTNL_EXPR_IMM_DREG, dreg);
  nftnl_expr_set(e, NFTNL_EXPR_IMM_DATA, data, len);
  return add(e);
}

RuleBuilder& RuleBuilder::verdict(int code, const std::string& chain) {
  nftnl_expr* e = nftnl_expr_alloc("immediate");
  nftnl_expr_set_u32(e, NFTNL_EXPR_IMM_DREG, NFT_REG_VERDICT);
  nftnl_expr_set_u32(e, NFTNL_EXPR_IMM_VERDICT, static_cast<uint32_t>(code));
  if (!chain.empty()) nftnl_expr_set_str(e, NFTNL_EXPR_IMM_CHAIN, chain.c_str());
  return add(e);
}

RuleBuilder& RuleBuilder::lookup(uint32_t sreg, const std::string& set, bool invert) {
  nftnl_expr* e = nftnl_expr_alloc("lookup");
  nftnl_expr_set_u32(e, NFTNL_EXPR_LOOKUP_SREG, sreg);
  nftnl_expr_set_str(e, NFTNL_EXPR_LOOKUP_SET, set.c_str());
  if (invert) nftnl_expr_set_u32(e, NFTNL_EXPR_LOOKUP_FLAGS, NFT_LOOKUP_F_INV);
  return add(e);
}

RuleBuilder& RuleBuilder::mapLookup(uint32_t sreg, const std::string& set, uint32_t dreg) {
  nftnl_expr* e = nftnl_expr_alloc("lookup");
  nftnl_expr_set_u32(e, NFTNL_EXPR_LOOKUP_SREG, sreg);
  nftnl_expr_set_str(e, NFTNL_EXPR_LOOKUP_SET, set.c_str());
  nftnl_expr_set_u32(e, NFTNL_EXPR_LOOKUP_DREG, dreg);
  return add(e);
}

RuleBuilder& RuleBuilder::numgen(uint32_t dreg, uint32_t modulus, uint32_t offset) {
  nftnl_expr* e = nftnl_expr_alloc("numgen");
  nftnl_expr_set_u32(e, NFTNL_EXPR_NG_DREG, dreg);
  nftnl_expr_set_u32(e, NFTNL_EXPR_NG_MODULUS, modulus);
  nftnl_expr_set_u32(e, NFTNL_EXPR_NG_TYPE, NFT_NG_RANDOM);
  nftnl_expr_set_u32(e, NFTNL_EXPR_NG_OFFSET, offset);
  return add(e);
}

RuleBuilder& RuleBuilder::bitwise(uint32_t sreg, uint32_t dreg, uint32_t len, const void* mask,
                                  const void* xorv) {
  nftnl_expr* e = nftnl_expr_alloc("bitwise");
  nftnl_expr_set_u32(e, NFTNL_EXPR_BITWISE_SREG, sreg);
  nftnl_expr_set_u32(e, NFTNL_EXPR_BITWISE_DREG, dreg);
  nftnl_expr_set_u32(e, NFTNL_EXPR_BITWISE_LEN, len);
  nftnl_expr_set(e, NFTNL_EXPR_BITWISE_MASK, mask, len);
  nftnl_expr_set(e, NFTNL_EXPR_BITWISE_XOR, xorv, len);
  return add(e);
}

RuleBuilder& RuleBuilder::fib(uint32_t flags, uint32_t result, uint32_t dreg) {
  nftnl_expr* e = nftnl_expr_alloc("fib");
  nftnl_expr_set_u32(e, NFTNL_EXPR_FIB_FLAGS, flags);
  nftnl_expr_set_u32(e, NFTNL_EXPR_FIB_RESULT, result);
  nftnl_expr_set_u32(e, NFTNL_EXPR_FIB_DREG, dreg);
  return add(e);
}

RuleBuilder& RuleBuilder::ct(uint32_t key, uint32_t dreg, int dir) {
  nftnl_expr* e = nftnl_expr_alloc("ct");
  nftnl_expr_set_u32(e, NFTNL_EXPR_CT_KEY, key);
  nftnl_expr_set_u32(e, NFTNL_EXPR_CT_DREG, dreg);
  if (dir >= 0) nftnl_expr_set_u8(e, NFTNL_EXPR_CT_DIR, static_cast<uint8_t>(dir));
  return add(e);
}

RuleBuilder& RuleBuilder::nat(uint32_t type, uint32_t family, uint32_t regAddr, uint32_t regProto,
                              uint32_t flags) {
  nftnl_expr* e = nftnl_expr_alloc("nat");
  nftnl_expr_set_u32(e, NFTNL_EXPR_NAT_TYPE, type);
  nftnl_expr_set_u32(e, NFTNL_EXPR_NAT_FAMILY, family);
  nftnl_expr_set_u32(e, NFTNL_EXPR_NAT_REG_ADDR_MIN, regAddr);
  if (regProto) nftnl_expr_set_u32(e, NFTNL_EXPR_NAT_REG_PROTO_MIN, regProto);
  if (flags) nftnl_expr_set_u32(e, NFTNL_EXPR_NAT_FLAGS, flags);
  return add(e);
}

RuleBuilder& RuleBuilder::masq(uint32_t flags) {
  nftnl_expr* e = nftnl_expr_alloc("masq");
  if (flags) nftnl_expr_set_u32(e, NFTNL_EXPR_MASQ_FLAGS, flags);
  return add(e);
}

RuleBuilder& RuleBuilder::reject(uint32_t type, uint8_t code) {
  nftnl_expr* e = nftnl_expr_alloc("reject");
  nftnl_expr_set_u32(e, NFTNL_EXPR_REJECT_TYPE, type);
  nftnl_expr_set_u8(e, NFTNL_EXPR_REJECT_CODE, code);
  return add(e);
}

RuleBuilder& RuleBuilder::dynset(uint32_t op, const std::string& set, uint32_t sregKey,
                                 uint32_t sregData, uint64_t timeoutMs) {
  nftnl_expr* e = nftnl_expr_alloc("dynset");
  nftnl_expr_set_u32(e, NFTNL_EXPR_DYNSET_OP, op);
  nftnl_expr_set_str(e, NFTNL_EXPR_DYNSET_SET_NAME, set.c_str());
  nftnl_expr_set_u32(e, NFTNL_EXPR_DYNSET_SREG_KEY, sregKey);
  if (sregData) nftnl_expr_set_u32(e, NFTNL_EXPR_DYNSET_SREG_DATA, sregData);
  if (timeoutMs) nftnl_expr_set_u64(e, NFTNL_EXPR_DYNSET_TIMEOUT, timeoutMs);
  return add(e);
}

RuleBuilder& RuleBuilder::counter() { return add(nftnl_expr_alloc("counter")); }

RuleBuilder& RuleBuilder::loadAddr(bool source, IpFamily f, uint32_t dreg) {
  if (f == IpFamily::V4) return payload(NFT_PAYLOAD_NETWORK_HEADER, source ? 12 : 16, 4, dreg);
  return payload(NFT_PAYLOAD_NETWORK_HEADER, source ? 8 : 24, 16, dreg);
}

RuleBuilder& RuleBuilder::matchAddr(bool source, const proxier::Cidr& c, bool negate) {
  const uint32_t len = c.addr.isV4() ? 4 : 16;
  loadAddr(source, c.addr.family, NFT_REG_1);
  if (c.prefixLen < len * 8) {
    uint8_t mask[16] = {}, zero[16] = {};
    for (uint32_t i = 0; i < len; ++i) {
      int keep = static_cast<int>(c.prefixLen) - static_cast<int>(i * 8);
      mask[i] = keep >= 8 ? 0xff : keep <= 0 ? 0 : static_cast<uint8_t>(0xff << (8 - keep));
    }
    bitwise(NFT_REG_1, NFT_REG_1, len, mask, zero);
  }
  return cmp(NFT_REG_1, negate ? NFT_CMP_NEQ : NFT_CMP_EQ, c.addr.bytes.data(), len);
}

RuleBuilder& RuleBuilder::matchAddr(bool source, const proxier::IpAddr& a) {
  loadAddr(source, a.family, NFT_REG_1);
  return cmp(NFT_REG_1, NFT_CMP_EQ, a.bytes.data(), static_cast<uint32_t>(a.size()));
}

RuleBuilder& RuleBuilder::markSet(uint32_t bits, bool clear) {
  uint32_t mask = ~bits, xorv = clear ? 0 : bits;
  meta(NFT_META_MARK, NFT_REG_1);
  bitwise(NFT_REG_1, NFT_REG_1, 4, &mask, &xorv);
  return metaSet(NFT_META_MARK, NFT_REG_1);
}

RuleBuilder& RuleBuilder::markTest(uint32_t bits, bool set) {
  uint32_t zero = 0;
  meta(NFT_META_MARK, NFT_REG_1);
  bitwise(NFT_REG_1, NFT_REG_1, 4, &bits, &zero);
  return cmpU32(NFT_REG_1, set ? NFT_CMP_NEQ : NFT_CMP_EQ, 0);
}

RuleBuilder& RuleBuilder::fibAddrTypeLocal(bool source) {
  fib(source ? NFTA_FIB_F_SADDR : NFTA_FIB_F_DADDR, NFT_FIB_RESULT_ADDRTYPE, NFT_REG_1);
  return cmpU32(NFT_REG_1, NFT_CMP_EQ, 2 /* RTN_LOCAL */);
}

RuleBuilder& RuleBuilder::iifname(const std::string& name, bool prefix, bool negate) {
  char buf[IFNAMSIZ] = {};
  std::strncpy(buf, name.c_str(), IFNAMSIZ - 1);
  meta(NFT_META_IIFNAME, NFT_REG_1);
  // A prefix compares only its own bytes; a full name includes the terminating NUL.
  uint32_t len = prefix ? static_cast<uint32_t>(name.size()) : static_cast<uint32_t>(name.size() + 1);
  return cmp(NFT_REG_1, negate ? NFT_CMP_NEQ : NFT_CMP_EQ, buf, len);
}

}  // namespace sliceproxy::backends::nft
