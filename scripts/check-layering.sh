#!/bin/sh
# Checks that every lib/ module #includes only itself and the modules it declares.
# Usage: scripts/check-layering.sh MODULE:DEP,DEP... ...   (the Makefile passes its
# deps.* declarations).  An #include "X/..." is a use of module X when lib/X is a
# folder; other include roots (kindling/ of guest/nano/include) are not modules.
# Prints FILE:LINE: error: ... for each undeclared use and exits 1 if there is one.
# A declared module that is not used gets a warning: the declarations set the link
# order, so they should be the true graph.
set -eu
cd "$(dirname "$0")/.."

INCLUDE='^[[:space:]]*#[[:space:]]*include[[:space:]]+"'
bad=0
for spec in "$@"; do
    m=${spec%%:*}
    deps=$(echo "${spec#*:}" | tr ',' ' ')
    [ -d "lib/$m" ] || continue
    used=$(grep -rhoE "$INCLUDE[A-Za-z0-9_]+/" "lib/$m" | sed -E 's/.*"//; s#/$##' | sort -u | tr '\n' ' ')
    for x in $used; do
        case " $m $deps " in *" $x "*) continue ;; esac
        [ -d "lib/$x" ] || continue
        grep -rnE "$INCLUDE$x/" "lib/$m" | cut -d: -f1,2 | while read -r at; do
            echo "$at: error: lib/$m uses lib/$x, but the Makefile's deps.$m does not list it" \
                "(deps.$m := $deps)" >&2
        done
        bad=1
    done
    for d in $deps; do
        case " $used " in *" $d "*) ;; *)
            echo "Makefile: warning: deps.$m lists $d, but nothing in lib/$m includes $d/" >&2 ;;
        esac
    done
done
exit $bad
