// sliceproxy: watches Services and EndpointSlices and programs this node's data plane.

#include "proxier/cmd/run.h"

int main(int argc, char** argv) {
  return sliceproxy::proxier::cmd::run(argc, argv);
}
