"""components/workloads/hcl_document.py: python-hcl2's document form and the text written back from it
(python-hcl2 8.1.4, pinned in requirements.txt: strings keep their quotes, heredocs are kept with
preserve_heredocs, blocks are lists of dicts marked __is_block__)."""

from __future__ import annotations

from components.workloads.hcl_document import add_block, block, dump, labelled, labelled_blocks, parse, unquote

# A heredoc's lines are the job's own, blank and space-only ones too (a template's text); outside it a
# line of spaces is nothing.
HEREDOCS = """job "x" {
  group "g" {
    task "t" {
      template {
        data = <<EOT
first

   indented, then a line of spaces
<FOUR SPACES>
EOT
      }
      template {
        data = <<-EOF
          trimmed
          EOF
      }
    }
  }
}
""".replace("<FOUR SPACES>", "    ")


def test_heredocs_come_back_line_for_line_and_blocks_one_empty_line_apart():
    document = parse(HEREDOCS)
    templates = document["job"][0]['"x"']["group"][0]['"g"']["task"][0]['"t"']["template"]
    assert templates[0]["data"] == '"<<EOT\nfirst\n\n   indented, then a line of spaces\n    \nEOT"', (
        "kept as a heredoc"
    )
    assert dump(document) == (
        'job "x" {\n  group "g" {\n    task "t" {\n      template {\n        data = <<EOT\nfirst\n\n'
        "   indented, then a line of spaces\n    \nEOT\n      }\n\n      template {\n        data = <<-EOF\n"
        "          trimmed\n          EOF\n      }\n    }\n  }\n}\n"
    )


def test_the_text_starts_at_its_first_block_and_ends_with_one_newline():
    text = dump({"job": [labelled("a", {"type": '"batch"', "meta": [block({"k": '"v"'})]})]})
    assert text == 'job "a" {\n  type = "batch"\n\n  meta {\n    k = "v"\n  }\n}\n'
    assert dump(parse(text)) == text


def test_a_literal_is_unquoted_and_anything_else_left_as_it_is():
    assert unquote('"apps"') == "apps" and unquote('""') == ""
    assert unquote('"a\\qb"') == "a\\qb", "not JSON: the text between the quotes"
    assert unquote('"') == '"' and unquote("${var.x}") == "${var.x}" and unquote(8080) == 8080


def test_labelled_blocks_are_read_by_their_unquoted_labels_and_bodies_are_the_documents_own():
    body = {"group": [labelled("web", {"count": 2}), labelled("db", {"count": 1})]}
    found = labelled_blocks(body, "group")
    assert [label for label, _ in found] == ["web", "db"]
    add_block(found[0][1], "task", {"driver": '"docker"'})
    assert body["group"][0]['"web"']["task"] == [{"driver": '"docker"', "__is_block__": True}]
    assert labelled_blocks({"group": "not blocks"}, "group") == []
