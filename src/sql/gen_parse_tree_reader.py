#!/usr/bin/env python3
"""Generates parse_tree_reader_nodes.inc from PostgreSQL 15's node headers.

pgrail reads libpg_query's parse tree in C (parse_tree_reader.cpp) into the same tree its JSON
output would give. What each node holds, field by field, is PostgreSQL's own declaration: this
script reads the structs and enums of nodes/{parsenodes,primnodes,value,nodes,lockoptions}.h
(postgresql-server-dev-15) and writes, for each node struct, a function that writes its fields in
declaration order, and for each enum a function naming its values.

libpg_query is PostgreSQL's parser with a few changes of its own, which its pg_query.proto
(libpg-query-dev) shows: each node's fields and each enum's values in libpg_query's order. A node
is written here only when PostgreSQL's header declares the proto's fields, by name and type, in
the proto's order (a field the header adds at the end, which libpg_query does not have, is not
written); an enum's
values are named by the header's constants when both list them in one order, else by their
position in libpg_query's order (LimitOption, which libpg_query reorders).

A field whose type this script does not know, or a node or enum the two sources disagree on,
makes its node unreadable here: reading a tree that holds such a node fails, and the analyzer
falls back to libpg_query's JSON (never a guess).

    gen_parse_tree_reader.py HEADER_DIR PROTO OUTPUT
"""
import re
import sys

# Files whose structs are parse nodes; the enums of all of them (and nodes.h's) are named.
NODE_FILES = ["parsenodes.h", "primnodes.h", "value.h"]
ENUM_FILES = ["nodes.h", "parsenodes.h", "primnodes.h", "lockoptions.h"]

# Written as JSON numbers (libpg_query: omitted when zero).
INTEGER_TYPES = {"int", "int16", "int32", "uint16", "uint32", "Oid", "Index", "AttrNumber", "long",
                 "bits32", "AclMode", "SubTransactionId", "uint64", "int64"}
# Hand-written in parse_tree_reader.cpp (its value is a union).
HAND_WRITTEN = {"A_Const"}
# Value nodes: written by parse_tree_reader.cpp too (their one field and its omission rule).
VALUE_NODES = {"Integer", "Float", "Boolean", "String", "BitString"}


def strip_comments(text):
    return re.sub(r"/\*.*?\*/", " ", text, flags=re.S)


def read_enums(text):
    enums = {}
    for match in re.finditer(r"typedef\s+enum\s+(\w+)?\s*\{(.*?)\}\s*(\w+)\s*;", text, re.S):
        name = match.group(3)
        values = []
        for item in match.group(2).split(","):
            item = item.strip()
            if not item or item.startswith("#"):
                continue
            ident = re.match(r"(\w+)\s*(=\s*(.+))?$", item, re.S)
            if not ident:
                raise SystemExit(f"gen_parse_tree_reader: unreadable value of enum {name}: {item!r}")
            value = ident.group(3)
            # A value defined as another value's alias repeats a case label: the first name wins.
            if value is not None and re.fullmatch(r"[A-Za-z_]\w*", value.strip()):
                continue
            values.append(ident.group(1))
        enums[name] = values
    return enums


def read_structs(text):
    structs = {}
    # `typedef struct X { ... } X;`, and `struct X { ... };` (PartitionBoundSpec).
    for match in re.finditer(r"^(typedef\s+)?struct\s+(\w+)\s*\{", text, re.M):
        name = match.group(2)
        # The body up to its matching brace (A_Const holds a union).
        depth, index = 1, match.end()
        while depth:
            depth += {"{": 1, "}": -1}.get(text[index], 0)
            index += 1
        body = text[match.end():index - 1]
        tail = re.match(r"\s*(\w*)\s*;", text[index:])
        if not tail or tail.group(1) != (name if match.group(1) else ""):
            continue
        structs[name] = body
    return structs


def fields_of(body):
    """(type, pointer, name) per field, or None when a field is beyond this script (a union)."""
    if "{" in body:
        return None
    fields = []
    for declaration in body.split(";"):
        declaration = " ".join(declaration.split())
        if not declaration:
            continue
        match = re.fullmatch(r"(?:const\s+)?(?:struct\s+)?(\w+)\s*(\*?)\s*(\w+)", declaration)
        if not match:
            return None
        fields.append((match.group(1), match.group(2) == "*", match.group(3)))
    return fields


def read_proto(path):
    """libpg_query's messages ((JSON name, proto type) of each field, in order) and enums (value
    names in order)."""
    with open(path, encoding="utf-8") as handle:
        text = strip_comments(handle.read())
    messages, enums = {}, {}
    for match in re.finditer(r"^message\s+(\w+)\s*\{(.*?)^\}", text, re.S | re.M):
        messages[match.group(1)] = [(name, (repeated or "") + kind) for repeated, kind, name in re.findall(
            r'^\s*(repeated\s+)?(\w+)\s+\w+\s*=\s*\d+\s*\[json_name="(\w+)"\]', match.group(2), re.M)]
    for match in re.finditer(r"^enum\s+(\w+)\s*\{(.*?)^\}", text, re.S | re.M):
        values = [(int(number), name) for name, number in re.findall(r"(\w+)\s*=\s*(\d+)\s*;", match.group(2))]
        enums[match.group(1)] = [name for number, name in sorted(values) if number > 0]  # 0: the proto's UNDEFINED
    return messages, enums


# The proto type libpg_query gives a field of each C type: a field whose types disagree is not read.
PROTO_TYPES = {"int": "int32", "int16": "int32", "int32": "int32", "AttrNumber": "int32",
               "uint16": "uint32", "uint32": "uint32", "Oid": "uint32", "Index": "uint32", "bits32": "uint32",
               "SubTransactionId": "uint32", "long": "int64", "int64": "int64", "uint64": "uint64",
               "AclMode": "uint64", "bool": "bool", "char": "string"}


def proto_type(kind, pointer):
    if pointer:
        return {"Node": "Node", "Expr": "Node", "List": "repeated Node", "char": "string"}.get(kind, kind)
    return PROTO_TYPES.get(kind, kind)  # an enum, or an embedded struct: its own name


def enum_naming(name, header_values, header_text, proto_enums):
    """How values of enum `name` are named: ("constants", names), ("positions", names) or None."""
    lib_values = proto_enums.get(name)
    if lib_values is None:
        return None
    if lib_values == header_values:
        return ("constants", header_values)
    body = re.search(r"typedef\s+enum\s+\w*\s*\{([^{}]*)\}\s*" + name + r"\s*;", header_text).group(1)
    if "=" in body or sorted(lib_values) != sorted(header_values):
        return None  # explicit values, or other values: nothing safe to say
    return ("positions", lib_values)


def main():
    header_dir, proto, output = sys.argv[1], sys.argv[2], sys.argv[3]
    proto_messages, proto_enums = read_proto(proto)
    texts = {}
    for file in set(NODE_FILES + ENUM_FILES):
        with open(f"{header_dir}/{file}", encoding="utf-8") as handle:
            texts[file] = strip_comments(handle.read())
    enums = {}
    for file in ENUM_FILES:
        for name, values in read_enums(texts[file]).items():
            naming = enum_naming(name, values, texts[file], proto_enums)
            if naming is not None:
                enums[name] = naming
    tag_enum = re.search(r"typedef enum NodeTag\s*\{(.*?)\}", texts["nodes.h"], re.S).group(1)
    tags = set(re.findall(r"\bT_(\w+)", tag_enum))
    structs = {}
    for file in NODE_FILES:
        structs.update(read_structs(texts[file]))
    # Node structs: a tag of their own, and a NodeTag or an Expr first (or, for
    # CreateForeignTableStmt, a whole CreateStmt: its first member begins with the tag).
    node_structs = {name for name, body in structs.items()
                    if name in tags and fields_of(body) and fields_of(body)[0][0] in ("NodeTag", "Expr")}
    node_structs |= {name for name, body in structs.items()
                     if name in tags and fields_of(body) and fields_of(body)[0][0] in node_structs
                     and not fields_of(body)[0][1]}

    def known(kind, pointer):
        # (No parse node has a floating-point field: one would need libpg_query's "%f" formatting.)
        return ((kind in ("Node", "Expr", "List") and pointer) or kind in node_structs
                or kind == "char" or (not pointer and (kind == "bool" or kind in INTEGER_TYPES or kind in enums)))

    def written_fields(name):
        """The fields libpg_query writes, in its order, or None when header and proto disagree."""
        fields = fields_of(structs[name])
        if fields is None or name not in proto_messages:
            return None
        if fields[0][0] in ("NodeTag", "Expr"):
            fields = fields[1:]  # the tag, or Expr's tag: never written
        fields = [field for field in fields if not (name == "Query" and field[2] == "queryId")]
        lib_fields = [field for field in proto_messages[name] if field[0] != "xpr"]  # never written
        if [(field, proto_type(kind, pointer)) for kind, pointer, field in fields[:len(lib_fields)]] != lib_fields:
            return None
        return fields[:len(lib_fields)]  # a field only the header has, at the end, is not libpg_query's

    generated = [name for name in sorted(node_structs)
                 if name not in HAND_WRITTEN and name not in VALUE_NODES and written_fields(name) is not None
                 and all(known(kind, pointer) for kind, pointer, _ in written_fields(name))]
    used_enums = set()
    functions = []
    for name in generated:
        lines = []
        for kind, pointer, field in written_fields(name):
            key = f'"{field}"'
            if kind in ("Node", "Expr") and pointer:
                lines.append(f"    out.node({key}, reinterpret_cast<const Node*>(node->{field}));")
            elif kind == "List":
                lines.append(f"    out.list({key}, node->{field});")
            elif pointer and kind in generated:
                lines.append(f"    if (node->{field} != nullptr) {{ out.open_object({key}); "
                             f"write_{kind}(out, node->{field}); out.close(); }}")
            elif not pointer and kind in generated:  # an embedded struct (CreateForeignTableStmt's base)
                lines.append(f"    out.open_object({key}); write_{kind}(out, &node->{field}); out.close();")
            elif not pointer and kind in node_structs:
                lines.append(f"    out.fail();  // an embedded {kind}: unreadable here")
            elif pointer and kind == "String":
                lines.append(f"    if (node->{field} != nullptr) {{ out.open_object({key}); "
                             f"out.string_or_null(\"sval\", node->{field}->sval); out.close(); }}")
            elif pointer and kind in ("A_Const",) + tuple(VALUE_NODES):
                lines.append(f"    if (node->{field} != nullptr) out.fail();  // a {kind}: never in a raw parse tree")
            elif pointer and kind != "char":
                lines.append(f"    if (node->{field} != nullptr) out.fail();  // {kind}: unreadable here")
            elif kind == "char" and pointer:
                lines.append(f"    out.string({key}, node->{field});")
            elif kind == "char":
                lines.append(f"    out.character({key}, node->{field});")
            elif kind == "bool":
                lines.append(f"    out.boolean({key}, node->{field});")
            elif kind in INTEGER_TYPES:
                lines.append(f"    out.integer({key}, static_cast<long long>(node->{field}));")
            else:  # an enum
                used_enums.add(kind)
                lines.append(f"    out.enumeration({key}, name_of(node->{field}));")
        functions.append((name, lines))

    with open(output, "w", encoding="utf-8") as out:
        out.write("// Generated by src/sql/gen_parse_tree_reader.py from PostgreSQL 15's node headers: do not edit.\n")
        left = sorted(node_structs - set(generated) - HAND_WRITTEN - VALUE_NODES)
        out.write("// Read through libpg_query's JSON instead (none is in a raw parse tree): "
                  + ", ".join(left) + ".\n\n")
        for name in sorted(used_enums):
            naming, values = enums[name]
            out.write(f"[[maybe_unused]] const char* name_of({name} value) {{\n")
            if naming == "constants":
                out.write("    switch (value) {\n")
                for value in values:
                    out.write(f'    case {value}: return "{value}";\n')
            else:
                out.write("    // libpg_query orders this enum otherwise than PostgreSQL's header: by position.\n")
                out.write("    switch (static_cast<int>(value)) {\n")
                for position, value in enumerate(values):
                    out.write(f'    case {position}: return "{value}";\n')
            out.write("    default: return nullptr;\n    }\n}\n\n")
        for name, _ in functions:
            out.write(f"void write_{name}(TreeWriter& out, const {name}* node);\n")
        out.write("\n")
        for name, lines in functions:
            out.write(f"void write_{name}([[maybe_unused]] TreeWriter& out, "
                      f"[[maybe_unused]] const {name}* node) {{\n")
            out.write("\n".join(lines) + ("\n" if lines else ""))
            out.write("}\n\n")
        out.write("// A node of a generated type, as {\"Type\": {fields}}; false for any other.\n")
        out.write("bool write_generated(TreeWriter& out, const Node* node) {\n    switch (nodeTag(node)) {\n")
        for name, _ in functions:
            out.write(f'    case T_{name}: out.open_object("{name}"); '
                      f'write_{name}(out, reinterpret_cast<const {name}*>(node)); out.close(); return true;\n')
        out.write("    default: return false;\n    }\n}\n")


if __name__ == "__main__":
    main()
