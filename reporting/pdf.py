"""PDF rendering of a signed report (fpdf2).

Owns :func:`render_pdf`: a one-column A4 document with the practice header, the study line, each section's
printed text, the critical-result communication, and the electronic signature line (reader, time, key id).
Uses the PDF core font when the text fits Latin-1 and DejaVu Sans (Debian ``fonts-dejavu-core``) otherwise.
"""
from __future__ import annotations

from pathlib import Path

from fpdf import FPDF

from .model import Report

_DEJAVU = Path("/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf")
_DEJAVU_BOLD = Path("/usr/share/fonts/truetype/dejavu/DejaVuSans-Bold.ttf")


def _fits_latin1(text: str) -> bool:
    try:
        text.encode("latin-1")
        return True
    except UnicodeEncodeError:
        return False


def render_pdf(report: Report, *, reader_name: str, signed_at: str, key_id: str = "", organization: str = "",
               compress: bool = True) -> bytes:
    s = report.study
    header = [organization or "ReadRoom Teleradiology", report.template.title]
    study_line = (f"Patient: {s.patient_name.replace('^', ' ')}   ID: {s.patient_id}   Accession: {s.accession_number}"
                  f"   Study date: {s.study_date}")
    body = report.render_text()
    everything = "\n".join(header + [study_line, body, reader_name])
    pdf = FPDF(format="A4")
    pdf.set_compression(compress)
    pdf.set_title(("Addendum - " if report.is_addendum else "") + report.template.title)
    pdf.set_author(reader_name)
    pdf.set_creator("ReadRoom")
    if _fits_latin1(everything) or not _DEJAVU.exists():
        family = "Helvetica"
        clean = (lambda t: t.encode("latin-1", "replace").decode("latin-1"))
    else:
        pdf.add_font("DejaVu", "", str(_DEJAVU))
        pdf.add_font("DejaVu", "B", str(_DEJAVU_BOLD if _DEJAVU_BOLD.exists() else _DEJAVU))
        family = "DejaVu"
        clean = (lambda t: t)
    pdf.add_page()
    pdf.set_font(family, "B", 14)
    pdf.cell(0, 8, clean(header[0]), new_x="LMARGIN", new_y="NEXT")
    pdf.set_font(family, "B", 12)
    pdf.cell(0, 7, clean(("ADDENDUM - " if report.is_addendum else "") + header[1]), new_x="LMARGIN", new_y="NEXT")
    pdf.set_font(family, "", 9)
    pdf.multi_cell(0, 5, clean(study_line), new_x="LMARGIN", new_y="NEXT")
    pdf.ln(3)
    for block in body.strip().split("\n\n")[1:]:  # first block is the title, printed above
        title, _, text = block.partition("\n")
        pdf.set_font(family, "B", 10)
        pdf.cell(0, 6, clean(title), new_x="LMARGIN", new_y="NEXT")
        pdf.set_font(family, "", 10)
        pdf.multi_cell(0, 5, clean(text), new_x="LMARGIN", new_y="NEXT")
        pdf.ln(2)
    pdf.ln(4)
    pdf.set_font(family, "", 9)
    sig = f"Electronically signed by {reader_name.replace('^', ' ')} at {signed_at}."
    if key_id:
        sig += f" Signature key {key_id}."
    pdf.multi_cell(0, 5, clean(sig), new_x="LMARGIN", new_y="NEXT")
    return bytes(pdf.output())
