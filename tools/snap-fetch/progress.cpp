// The progress bar is snap-chunk's (tools/snap-chunk/progress.*), compiled here too
// so there is one implementation; it belongs in lib/base once a third tool needs it.
#include "../snap-chunk/progress.cpp"
