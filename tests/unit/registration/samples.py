"""Valid raw applications (appendix forms of the rules) and matching registry extracts."""

from __future__ import annotations

from typing import Any

INDIVIDUAL: dict[str, Any] = {
    "surname": "Ахметова",
    "given_name": "Әсем",
    "patronymic": "Серікқызы",
    "iin": "850525400017",
    "birth_date": "1985-05-25",
    "id_document": {
        "type": "id_card",
        "number": "041234567",
        "issuer": "МВД РК",
        "issue_date": "2018-03-01",
    },
    "residence_address": {
        "region": "Алматинская область",
        "locality": "Қонаев",
        "street": "ул. Абая",
        "house": "12/3",
        "apartment": "45",
        "postcode": "B01P3K4",
    },
    "home_phone": "8 (727) 250-00-00",
    "mobile_phone": "8 (701) 123-45-67",
    "username": "asem.akhmetova",
}

#: Another valid IIN (1990-01-01, male; needs the checksum's second pass).
OTHER_IIN = "900101300811"

ADDRESS: dict[str, Any] = {
    "locality": "Астана",
    "street": "пр. Мәңгілік Ел",
    "house": "55/21",
    "postcode": "010000",
}

LEGAL_ENTITY: dict[str, Any] = {
    "name": "ТОО «Ромашка»",
    "bin": "150340001236",
    "registration": {"number": "12345-1910-ТОО", "date": "2015-03-10", "issuer": "МЮ РК"},
    "legal_address": ADDRESS,
    "actual_address": {**ADDRESS, "house": "7"},
    "work_phone": "+7 7172 55 55 55",
    "mobile_phone": "+7 777 000 11 22",
    "username": "romashka",
}

#: A registry extract that knows the applicants above (FileRegistry JSON format).
REGISTRY_EXTRACT: dict[str, Any] = {
    "persons": [
        {
            "iin": "850525400017",
            "surname": "АХМЕТОВА",
            "given_name": "Әсем",
            "patronymic": "Серікқызы",
            "birth_date": "1985-05-25",
            "life_status": "alive",
        },
        {
            "iin": "900101300811",
            "surname": "Иванов",
            "given_name": "Иван",
            "patronymic": "",
            "birth_date": "1990-01-01",
            "life_status": "deceased",
        },
    ],
    "entities": [
        {"bin": "150340001236", "name": 'ТОО "Ромашка"', "status": "active", "head_iin": ""},
        {"bin": "940140000385", "name": "АО Закрыто", "status": "liquidated", "head_iin": ""},
    ],
}
